"""Callbacks: POST a task's status JSON to its ``url_callback`` / ``url_errback``.

``send_status`` is the last step of a task flow (and the whole of the ``send-errback``
flow): a Prefect task named ``callback <host>`` / ``errback <host>`` that POSTs the
status in the shape of the surface the task was created on, retried by Prefect with
exponential backoff (``callback_attempts``, ``callback_backoff``), each try limited to
``callback_timeout`` seconds. The outcome is a log line and the task run's state; a
callback that fails never changes the task's own state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.tasks import exponential_backoff

from flows.contract.runs import read_runs, surface_of
from flows.contract.stupeflix import stupeflix_status
from flows.errors import FetchError
from flows.settings import get_settings
from flows.steps.sources import check_url_allowed, send_pinned, tls_context
from flows.steps.step import step_log


class CallbackFailed(Exception):
    """The receiver did not take the status (no answer, or not 2xx): worth another try."""


async def deliver(url: str, status: dict[str, Any]) -> None:
    """POST ``status`` to ``url`` once, to the address that was checked.

    Callback URLs obey the same address rules as fetch (no private addresses unless
    allowed by ``DRAGONFLOW_FETCH_ALLOW``): FetchError when refused, CallbackFailed when
    the POST fails or takes more than ``callback_timeout`` seconds."""
    settings = get_settings()
    addresses = await check_url_allowed(url, settings)
    try:
        async with asyncio.timeout(settings.callback_timeout):
            async with httpx.AsyncClient(timeout=settings.callback_timeout, verify=tls_context(), trust_env=False) as client:
                response = await send_pinned(client, url, addresses, method="POST", json=status)
                await response.aclose()
    except (httpx.HTTPError, TimeoutError) as exc:
        raise CallbackFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
    if not response.is_success:
        raise CallbackFailed(f"HTTP {response.status_code}")


async def post_status(url: str, status: dict[str, Any]) -> bool:
    """POST ``status`` to ``url`` once, outside Prefect; True when delivered."""
    try:
        await deliver(url, status)
        return True
    except (FetchError, CallbackFailed) as exc:
        step_log("callback %s not delivered: %s", url, exc, level=logging.WARNING)
        return False


def _not_refused(task: Any, task_run: Any, state: State) -> bool:
    """Prefect ``retry_condition_fn``: a refused address is final, anything else is retried."""
    return not isinstance(state.data, FetchError)


def _run_name(parameters: dict[str, Any]) -> str:
    return f"{parameters['kind']} {urlsplit(parameters['url']).hostname}"


_settings = get_settings()


@task(
    name="callback",
    task_run_name=_run_name,
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=_settings.callback_attempts - 1,
    retry_delay_seconds=exponential_backoff(_settings.callback_backoff)(_settings.callback_attempts - 1) or 0,
    retry_condition_fn=_not_refused,
)
async def send(kind: str, url: str, status: dict[str, Any]) -> None:
    """POST a ``kind`` (callback, errback) status to ``url``; fails the task run when not
    delivered (then retried by Prefect)."""
    await deliver(url, status)
    step_log("%s delivered to %s (%s)", kind, url, status["status"])


async def ending_status(flow_run_id: UUID | str, state: State | None = None) -> dict[str, Any] | None:
    """The run's status as its client sees it, in its surface's shape; with ``state``, as
    if the run had already ended in it (the run's own state still reads Running)."""
    flow_run_id = UUID(str(flow_run_id))
    async with get_client() as client:
        view = (await read_runs(client, [flow_run_id])).get(flow_run_id)
    if view is None:
        return None
    if state is not None:
        view.run = view.run.model_copy(update={"state": state})
    return stupeflix_status(view, version=surface_of(view.run))


async def send_status(flow_run_id: UUID | str, url: str | None, kind: str, state: State | None = None) -> None:
    """Send the run's status to ``url`` as a ``kind`` task run (nothing without ``url``).
    A failed delivery is logged and leaves the task run Failed; it is never raised."""
    if not url:
        return
    try:
        status = await ending_status(flow_run_id, state)
    except Exception as exc:  # Prefect's API gone after its client's own retries
        step_log("%s to %s not sent: the run could not be read: %s", kind, url, exc, level=logging.WARNING)
        return
    if status is not None:
        await send(kind, url, status, return_state=True)

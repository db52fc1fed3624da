"""Callbacks: POST the final status JSON to ``url_callback`` / ``url_errback``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from prefect.client.orchestration import get_client

from flows.contract.runs import read_runs, surface_of
from flows.contract.stupeflix import stupeflix_status
from flows.errors import FetchError
from flows.settings import get_settings
from flows.steps.fetch import check_url_allowed, send_pinned, tls_context

logger = logging.getLogger("dragonflow.notify")


async def post_status(url: str, status: dict[str, Any]) -> bool:
    """POST ``status`` as JSON to ``url``, retried with exponential backoff; True on 2xx.

    Callback URLs obey the same address rules as fetch (no private addresses unless
    allowed by ``DRAGONFLOW_FETCH_ALLOW``), and the request goes to the address that was
    checked."""
    settings = get_settings()
    try:
        addresses = await check_url_allowed(url, settings)
    except FetchError as exc:
        logger.warning("callback not sent: %s", exc)
        return False
    delay = settings.callback_backoff
    async with httpx.AsyncClient(timeout=10.0, verify=tls_context(), trust_env=False) as client:
        for attempt in range(1, settings.callback_attempts + 1):
            try:
                response = await send_pinned(client, url, addresses, method="POST", json=status)
                await response.aclose()
                if response.is_success:
                    return True
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            logger.warning("callback %s attempt %d failed: %s", url, attempt, reason)
            if attempt < settings.callback_attempts:
                await asyncio.sleep(delay)
                delay *= 2
    return False


async def notify_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook: send the run's final status to its callback or errback."""
    params = flow_run.parameters.get("params") or {}
    url = params.get("url_callback") if state.is_completed() else params.get("url_errback")
    if not url:
        return
    async with get_client() as client:
        found = await read_runs(client, [flow_run.id])
    if flow_run.id not in found:
        return
    view = found[flow_run.id]
    await post_status(url, stupeflix_status(view, version=surface_of(view.run)))

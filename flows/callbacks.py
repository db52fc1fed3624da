"""The notification flows run by deployments, not by the task flows themselves.

``send-errback``: the errback of a task run that ended without its flow's code sending it.
A Prefect automation (``deployments/register.py``) runs this flow's deployment when a
task's run is Crashed (its worker died), Cancelled, or refused for invalid parameters
(created already Failed, named ``InvalidParameters``). It is not a task: no registry
entry, no ``errback`` tag, so it never triggers an errback of its own.

``send-callback``: a delivery whose first try failed (``flows/steps/notify.py``), tried
again on the documented schedule. Each try is one pass of its run; after a failed try the
run returns ``AwaitingRetry`` scheduled ``callback_backoff * 2**n`` seconds later, so no
worker holds it while it waits (Prefect's own flow retries sleep inside the worker), and
any worker picks it up when it is due. The run ends Completed when delivered, Failed when
the tries are used up, and the outcome is written on the task's run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from prefect import flow, get_run_logger, runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.states import AwaitingRetry, Failed

from flows.contract.keys import key_for
from flows.errors import FetchError
from flows.settings import get_settings
from flows.steps.notify import (CALLBACK_FLOW, CallbackFailed, deliver, record_delivery, retry_delays,
                                send_ending, signing_secret, tries)

ERRBACK_FLOW = "send-errback"


@flow(name=ERRBACK_FLOW, flow_run_name="errback {flow_run_id}", persist_result=False)
async def send_errback(flow_run_id: UUID) -> None:
    """Send the ended run's notification: a Stupeflix task's ``url_errback``, a VimQu
    task's webhooks."""
    await send_ending(flow_run_id)


def _delivery_name() -> str:
    parameters = runtime.flow_run.parameters
    return f"{parameters['kind']} {urlsplit(parameters['url']).hostname} for {key_for(parameters['origin'])}"


async def _try_number() -> int:
    """Which try of the delivery this pass is: the 1st was the task's own."""
    async with get_client() as client:
        return 1 + (await client.read_flow_run(runtime.flow_run.id)).run_count


@flow(name=CALLBACK_FLOW, flow_run_name=_delivery_name, persist_result=False)
async def send_callback(kind: str, url: str, body: dict[str, Any], origin: UUID, account: str | None = None,
                        message_id: str | None = None) -> State | str:
    """Try again to POST ``body`` to ``url`` (the ``kind`` notification of task run
    ``origin``); scheduled again after a failure until ``callback_attempts`` tries are used."""
    settings, logger = get_settings(), get_run_logger()
    number = await _try_number()
    try:
        answered = await deliver(url, body, await signing_secret(account), message_id)
    except (CallbackFailed, FetchError) as exc:
        if isinstance(exc, CallbackFailed) and number < settings.callback_attempts:
            delay = retry_delays(settings)[number - 1]
            logger.warning("try %d of %d failed: %s; next in %g s", number, settings.callback_attempts, exc, delay)
            return AwaitingRetry(scheduled_time=datetime.now(timezone.utc) + timedelta(seconds=delay),
                                 message=f"try {number} failed: {exc}")
        outcome = f"gave up after {tries(number)}: {exc}"
        logger.error("%s", outcome)
        await record_delivery(origin, kind, url, outcome)
        return Failed(message=outcome)
    outcome = f"delivered ({answered}) after {tries(number)}"
    logger.info("%s", outcome)
    await record_delivery(origin, kind, url, outcome)
    return outcome

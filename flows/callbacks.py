"""``send-errback``: the errback of a task run that ended without its flow's code sending it.

A Prefect automation (``deployments/register.py``) runs this flow's deployment when a
task's run is Crashed (its worker died), Cancelled, or refused for invalid parameters
(created already Failed, named ``InvalidParameters``). It is not a task: no registry
entry, no ``errback`` tag, so it never triggers an errback of its own.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow

from flows.steps.notify import send_ending

ERRBACK_FLOW = "send-errback"


@flow(name=ERRBACK_FLOW, flow_run_name="errback {flow_run_id}", persist_result=False)
async def send_errback(flow_run_id: UUID) -> None:
    """Send the ended run's notification: a Stupeflix task's ``url_errback``, a VimQu
    task's webhooks."""
    await send_ending(flow_run_id)

"""``send-errback``: the errback of a task run that ended without its flow's code sending it.

A Prefect automation (``deployments/register.py``) runs this flow's deployment when a
task's run is Crashed (its worker died), Cancelled, or refused for invalid parameters
(created already Failed, named ``InvalidParameters``). It is not a task: no registry
entry, no ``errback`` tag, so it never triggers an errback of its own.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client

from flows.steps.notify import send_status

ERRBACK_FLOW = "send-errback"


@flow(name=ERRBACK_FLOW, flow_run_name="errback {flow_run_id}", persist_result=False)
async def send_errback(flow_run_id: UUID) -> None:
    """POST the ended run's status to its ``url_errback``, if it has one."""
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    url = (run.parameters.get("params") or {}).get("url_errback")
    await send_status(flow_run_id, url, "errback")

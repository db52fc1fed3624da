"""``recover-run``: what happens to a task whose worker died (killed, out of memory, or
taken down by its own input).

A Prefect automation (``deployments/register.py``) runs this flow's deployment when a
running task's heartbeats stop for ``heartbeat_timeout`` seconds, or a claimed (Pending)
one has not started within that time. The task is scheduled again for any worker
(``AwaitingRetry``) up to ``crash_retries`` times; after that it ends Crashed with a message
saying so, and its errback is sent by the errback automation. A run being cancelled
(Cancelling) ends Cancelled instead of running again. A run that ended meanwhile, or whose heartbeats came back (the Prefect tier itself was down
and its worker kept running it: it gets ``heartbeat_timeout / 2`` to beat again), is left
alone: a task is never run twice at once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import get_current_settings
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import AwaitingRetry, Cancelled, Crashed

from flows.settings import get_settings

RECOVERY_FLOW = "recover-run"
# The warm worker's events for each run it holds: a beat every heartbeat_timeout / 3 s, and
# one when it lets the run go (sent after its last beat, on the same stream, so a late beat
# never reopens the watch of a run that ended).
BEAT, RELEASED = "dragonflow.flow-run.beat", "dragonflow.flow-run.released"
RECOVERED = "Recovered"  # the name of the Scheduled state a recovered run is given
CANCELLED_ORPHAN = "cancelled while its worker was gone"


@flow(name=RECOVERY_FLOW, flow_run_name="recover {flow_run_id}", persist_result=False)
async def recover_run(flow_run_id: UUID) -> str:
    """Run the task again, or end it Crashed once its worker died ``crash_retries`` + 1 times."""
    settings = get_settings()
    logger = get_run_logger()
    async with get_client() as client:
        if (run := await _unsettled(client, flow_run_id)) is None:
            return "left alone"
        if await _beats_again(client, flow_run_id, settings.heartbeat_timeout):
            logger.info("%s: its worker is beating again, left alone", run.name)
            return "alive"
        if (run := await _unsettled(client, flow_run_id)) is None:  # it may have ended while we waited
            return "left alone"
        if run.state.type == StateType.CANCELLING:  # its client asked to stop it: never run it again
            await client.set_flow_run_state(flow_run_id, Cancelled(message=CANCELLED_ORPHAN), force=True)
            logger.info("%s: %s", run.name, CANCELLED_ORPHAN)
            return "Cancelled"
        history = await client.read_flow_run_states(flow_run_id)
        deaths = 1 + sum(1 for state in history if state.name == RECOVERED)
        silent = f"no heartbeat for {settings.heartbeat_timeout:g} s"
        if deaths <= settings.crash_retries:
            message = f"the worker running this task stopped ({silent}): running it again ({deaths} of {settings.crash_retries})"
            state = AwaitingRetry(message=message)
            state.name = RECOVERED
        else:
            times = "" if deaths == 1 else f", {deaths} times"
            message = f"the worker running this task stopped responding ({silent}{times})"
            state = Crashed(message=message)
        await client.set_flow_run_state(flow_run_id, state, force=True)
        logger.info("%s: %s", run.name, message)
        return state.name


async def _unsettled(client: PrefectClient, flow_run_id: UUID) -> FlowRun | None:
    """The run, unless it ended or is scheduled already (then nothing to recover: logged)."""
    run = await client.read_flow_run(flow_run_id)
    if run.state is None or run.state.is_final() or run.state.is_scheduled():
        get_run_logger().info("%s is %s: nothing to recover", run.name, run.state.name if run.state else "stateless")
        return None
    return run


async def _beat_since(client: PrefectClient, flow_run_id: UUID, since: datetime) -> bool:
    """Whether the run's worker sent a heartbeat since ``since``."""
    page = await client.read_events(EventFilter(
        event=EventNameFilter(name=[BEAT]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        occurred=EventOccurredFilter(since=since),
    ), limit=1)
    return bool(page.events)


async def _beats_again(client: PrefectClient, flow_run_id: UUID, timeout: float) -> bool:
    """Whether the run's worker is alive: a beat in the last ``timeout`` seconds, or one
    within ``timeout / 2`` from now (plus the time Prefect's event persister takes to make
    it readable: its flush interval, 5 s by default). The wait is for a Prefect outage: the beats sent while
    the tier was down are lost, so right after it comes back (when the automation fires
    for every running task) a live worker is silent until its next beat (every
    ``timeout / 3``) reconnects its event stream."""
    now = datetime.now(timezone.utc)
    if await _beat_since(client, flow_run_id, now - timedelta(seconds=timeout)):
        return True
    readable_after = get_current_settings().server.services.event_persister.flush_interval + 1
    deadline = asyncio.get_running_loop().time() + timeout / 2 + readable_after
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(min(1.0, timeout / 20))
        if await _beat_since(client, flow_run_id, now):
            return True
    return False

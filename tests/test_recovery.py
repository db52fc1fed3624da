"""``recover-run`` after a Prefect outage: the beats a live worker sent while the tier was
down are lost, so a run silent for the whole heartbeat timeout gets half that again to beat
before it is run again; one that stays silent is recovered. Runs on the session's Prefect
server, the flow run in this process."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending, Running, Scheduled

from flows import recovery
from flows.settings import get_settings

TIMEOUT = 10.0  # the least the setting takes


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setenv("DRAGONFLOW_HEARTBEAT_TIMEOUT", str(TIMEOUT))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def running_run(client):
    """A hello run set Running by hand (scheduled far ahead first: no worker takes it)."""
    deployment = await client.read_deployment_by_name("hello/hello")
    run = await client.create_flow_run_from_deployment(
        deployment.id, parameters={"params": {"name": "silent"}},
        state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)))
    await client.set_flow_run_state(run.id, Pending(), force=True)
    await client.set_flow_run_state(run.id, Running(), force=True)
    return run


@pytest.mark.parametrize("beats_again", [True, False])
async def test_a_run_silent_through_an_outage_gets_time_to_beat(service, short_timeout, beats_again):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            run = await running_run(client)
            try:
                started = time.monotonic()
                recovering = asyncio.create_task(recovery.recover_run(run.id))
                if beats_again:  # the worker's event stream reconnects: its next beat
                    await asyncio.sleep(TIMEOUT / 6)
                    emit_event(event=recovery.BEAT, resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"})
                outcome = await recovering
                took = time.monotonic() - started
                state = (await client.read_flow_run(run.id)).state
                if beats_again:
                    assert (outcome, state.name) == ("alive", "Running"), (outcome, state)
                else:
                    # the session's worker may take the recovered run at once: its history says
                    history = await client.read_flow_run_states(run.id)
                    recovered = [st for st in history if st.name == recovery.RECOVERED]
                    assert outcome == recovery.RECOVERED and recovered, (outcome, [st.name for st in history])
                    state = recovered[0]
                    assert took >= TIMEOUT / 2, f"recovered after {took:.1f} s: no time given to beat again"
                    assert "no heartbeat for 10 s" in state.message
            finally:
                await client.delete_flow_run(run.id)

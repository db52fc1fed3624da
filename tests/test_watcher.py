"""The API's shared run watcher against the session's real Prefect server: snapshots are
reused until Prefect reports a newer state, and its events arrive by themselves."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending, Running, Scheduled

from api.watcher import RunWatcher


async def test_snapshots_last_until_prefect_reports_a_newer_state(service):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("hello/hello")
            run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"params": {"name": "watched"}},
                state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)),  # not for the worker
            )
            watcher = RunWatcher(client, max_age=60, trust_age=60)  # snapshots never expire by age here
            try:
                watcher.remember([run])
                pending = (await client.set_flow_run_state(run.id, Pending(), force=True)).state
                # Not started: no events, so only ``changed`` tells it of the new state.
                assert (await watcher.current([run.id]))[run.id].run.state.is_scheduled()
                watcher.changed(run.id, run.state.timestamp)  # the state it already has
                assert (await watcher.current([run.id]))[run.id].run.state.is_scheduled()
                watcher.changed(run.id, pending.timestamp)
                assert (await watcher.current([run.id]))[run.id].run.state.is_pending()

                watcher.start()  # now following Prefect's events
                deadline = time.monotonic() + 10
                while not watcher._events_live and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # the subscription is set up on the server
                await watcher.current([run.id])  # a snapshot good for trust_age
                await client.set_flow_run_state(run.id, Running(), force=True)
                seen = None
                while time.monotonic() < deadline:
                    seen = (await watcher.current([run.id]))[run.id].run.state
                    if seen.is_running():
                        break
                    await asyncio.sleep(0.05)
                assert seen is not None and seen.is_running(), "the Running event did not reach the watcher"
            finally:
                await watcher.stop()
                await client.delete_flow_run(run.id)

"""The warm worker's shared pieces, against the session's real Prefect server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from prefect import flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest, register_flow_run_suspension_request
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending, Running, Scheduled, Suspended

from deployments.suspension import shared_suspension_observer


async def test_one_observer_sees_a_suspension_from_the_ui(service):
    """A run suspended through the API (as the UI's Suspend does) is flagged to its engine
    by the worker's one shared observer; leaving it restores Prefect's own observer."""
    stock = flow_engine.observe_flow_run_suspension
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("hello/hello")
            run = await client.create_flow_run_from_deployment(
                deployment.id, parameters={"params": {"name": "x"}}, state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)),  # not for the worker
            )
            try:
                await client.set_flow_run_state(run.id, Pending(), force=True)
                await client.set_flow_run_state(run.id, Running(), force=True)
                request = FlowRunSuspensionRequest()
                async with shared_suspension_observer():
                    assert flow_engine.observe_flow_run_suspension is not stock
                    with register_flow_run_suspension_request(run.id, request), \
                            flow_engine.observe_flow_run_suspension(run.id, request):
                        assert not request.is_requested()
                        result = await client.set_flow_run_state(run.id, Suspended(timeout_seconds=600))
                        assert result.status.value == "ACCEPT", result
                        for _ in range(200):
                            if request.is_requested():
                                break
                            await asyncio.sleep(0.05)
                        assert request.is_requested(), "the shared observer never flagged the suspension"
                        assert request.get_state().name == "Suspended"
                assert flow_engine.observe_flow_run_suspension is stock
            finally:
                await client.delete_flow_run(run.id)


async def test_the_pickup_listener_outlives_a_prefect_api_dying_mid_handshake(caplog):
    """An API process killed while the worker's events websocket connects answers nothing
    valid (``InvalidMessage``): the listener subscribes again instead of ending, which
    used to cancel the worker's task group and crash every run in flight (a whole Prefect
    tier outage lost tasks)."""
    from deployments.worker import WarmWorker

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the upgrade request: then no answer at all
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    api = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api"
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            worker = WarmWorker(work_pool_name="nowhere")
            listening = asyncio.create_task(worker.listen_for_scheduled_runs())
            await asyncio.sleep(3)
            assert not listening.done(), listening.exception()
            listening.cancel()
    finally:
        server.close()
    tries = [r.getMessage() for r in caplog.records if "subscribing again" in r.getMessage()]
    assert len(tries) >= 2 and "InvalidMessage" in tries[0], tries
    assert worker._wake.is_set()  # each new subscription asks for runs scheduled meanwhile


async def test_the_warm_engine_names_the_run_in_its_first_update_and_reads_nothing_back(service):
    """A claimed run goes through Prefect's engine with one update (version, retry policy
    and the task key as its name) and no read of the run: the server ends up with the
    same run as the stock engine leaves (named by its key, Completed, run once)."""
    from prefect.context import AsyncClientContext

    from deployments.warm_engine import run_claimed
    from flows.contract.keys import key_for
    from flows.hello import hello

    calls: list[str] = []
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        async with AsyncClientContext.get_or_create() as context:
            client = context.client
            deployment = await client.read_deployment_by_name("hello/hello")
            run = await client.create_flow_run_from_deployment(
                deployment.id, parameters={"params": {"name": "warm"}},
                state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)))  # not for the worker
            try:
                claimed = await client.set_flow_run_state(run.id, Pending(), force=True)
                assert claimed.status.value == "ACCEPT"
                run = await client.read_flow_run(run.id)

                async def count(request):
                    if f"/flow_runs/{run.id}" in request.url.path:
                        calls.append(f"{request.method} {request.url.path.rsplit(str(run.id), 1)[1] or '/'}")

                client._client.event_hooks["request"].append(count)
                try:
                    state = await run_claimed(hello, run)
                finally:
                    client._client.event_hooks["request"].remove(count)
                assert state.is_completed(), state
                assert calls == ["PATCH /", "POST /set_state", "POST /set_state"], calls
                ended = await client.read_flow_run(run.id)
                assert (ended.name, ended.run_count, ended.state.type.value) == (key_for(run.id), 1, "COMPLETED")
                assert ended.flow_version == hello.version and ended.start_time is not None
            finally:
                await client.delete_flow_run(run.id)

"""One Prefect suspension observer for every run of the warm worker.

Prefect 3.8's flow engine lets the UI suspend a running deployment run: for each such run
it starts a thread with its own event loop, client and events websocket, reads the run
once, and blocks until all of that is up (``prefect._flow_run_suspension``). In a worker
that runs many flows in one process, that blocked the shared event loop for ~0.2 s per
run. ``shared_suspension_observer`` keeps a single ``FlowRunSuspendingObserver`` open for
the worker's life and hands the engine a context manager that just registers the run
with it, so suspension still works and costs nothing per run. It replaces a private
function of Prefect's flow engine, so it requires Prefect 3.8.8.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Callable, Iterator
from uuid import UUID

from prefect import flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest, mark_flow_run_suspension_requested
from prefect._internal.observers import FlowRunSuspendingObserver

from deployments.prefect_server import require_prefect


@asynccontextmanager
async def shared_suspension_observer() -> AsyncIterator[FlowRunSuspendingObserver]:
    """While open, flow runs started in this process are watched by one shared observer."""
    require_prefect("shared_suspension_observer (flow_engine.observe_flow_run_suspension)")
    loop = asyncio.get_running_loop()

    def on_loop(call: Callable[[UUID], None], flow_run_id: UUID) -> None:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            call(flow_run_id)
        else:  # an engine running in another thread
            loop.call_soon_threadsafe(call, flow_run_id)

    # The engine registered the run's request under its id before entering this, so the
    # observer marks it through Prefect's registry.
    async with FlowRunSuspendingObserver(on_suspended=mark_flow_run_suspension_requested) as observer:

        @contextmanager
        def observe(flow_run_id: UUID, suspension_request: FlowRunSuspensionRequest) -> Iterator[None]:
            on_loop(observer.add_in_flight_flow_run_id, flow_run_id)
            try:
                yield
            finally:
                on_loop(observer.remove_in_flight_flow_run_id, flow_run_id)

        stock = flow_engine.observe_flow_run_suspension
        flow_engine.observe_flow_run_suspension = observe
        try:
            yield observer
        finally:
            flow_engine.observe_flow_run_suspension = stock

"""The warm worker: a real Prefect worker that runs flow runs inside its own process.

It claims runs from the work pool through the Prefect API like any worker (it heartbeats,
shows in the UI's work pool, and a run it cannot start is marked Crashed), but instead of
starting a subprocess per run it imports the deployment's flow once and runs it with
Prefect's flow engine in this long-lived process, so a run does not pay a Python
start-up. Two things keep a small task fast:

- pickup: it listens to Prefect's ``prefect.flow-run.Scheduled`` events and asks for work
  as soon as one arrives (polling every ``worker_poll_seconds`` only as a fallback), so
  pickup has no polling delay and an idle worker does not hammer the database;
- claiming: a claimed run goes Scheduled -> Pending -> (engine) Running -> Completed, with
  none of the stock worker's extra calls for infrastructure it does not have (job
  template, labels, Submitting state, process id);
- running: Prefect's flow engine minus a rename and a read back (``deployments.warm_engine``);
- sharing: one Prefect client and one suspension observer serve every run's engine, and
  Prefect's default result storage is our registered block, so the engine makes no
  per-run connection set-up or server look-ups.

Cancellation (the UI's Cancel sets Cancelling): Prefect 3.8.8's worker only cancels runs
that have not started, and a stock worker's runs live in a subprocess it kills. Here the
worker watches Cancelling for the runs it holds (Prefect's cancelling observer, enabled),
cancels the flow's body (an asyncio task: any ffmpeg child it started is killed with it)
and the body returns a Cancelled state, which the engine reports as the run's final state
(cancelling the engine itself would report Crashed).

It overrides private ``BaseWorker`` members, so it requires Prefect 3.8.8.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib
import logging
import socket
import sys
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import anyio
import httpx
from pydantic import TypeAdapter
from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import WorkerFlowRunResponse
from prefect.context import AsyncClientContext, FlowRunContext
from prefect.events import emit_event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.filesystems import LocalFileSystem
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
    PREFECT_WORKER_ENABLE_CANCELLATION,
    PREFECT_WORKER_QUERY_SECONDS,
    temporary_settings,
)
from prefect.states import Cancelled
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from deployments.prefect_server import require_prefect
from deployments.register import RESULTS_BLOCK, RESULTS_BLOCK_NAME, WORKER_TYPE
from deployments.suspension import shared_suspension_observer
from deployments.warm_engine import run_claimed
from flows.recovery import BEAT, RECOVERED, RELEASED
from flows.settings import get_settings

logger = logging.getLogger("dragonflow.worker")
# Imported in a background thread when a worker starts, so the first run of a task does
# not pay for them (librosa.beat compiles its numba functions at import: 5-15 s).
WARM_IMPORTS = ("flows.registry", "librosa.beat")
# Names of the Scheduled states that make a run ready for a worker: new, retried, recovered.
PICKUP_STATES = ("Scheduled", "AwaitingRetry", RECOVERED)
DEFAULT_PICKUP = 10  # runs asked for at once by a worker without a limit
SCHEDULED_RUNS = TypeAdapter(list[WorkerFlowRunResponse])
LISTEN_RETRY = 1.0  # seconds before subscribing again to Prefect's events after a failure
REFILL_GATHER = 0.1  # seconds a backlogged worker waits after a run ends, so one pickup fills several slots


def _emit(event: str, run_id: UUID) -> None:
    emit_event(event=event, resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"})


def warm_up() -> None:
    for module in WARM_IMPORTS:
        importlib.import_module(module)


class WarmWorkerResult(BaseWorkerResult):
    """Outcome of one in-process run."""


def load_entrypoint(entrypoint: str) -> Flow[..., Any]:
    """The flow object an entrypoint (``package.module:name``) names."""
    module_name, _, attribute = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def cancellable(flow: Flow[..., Any], bodies: dict[UUID, asyncio.Task[Any]], message: str) -> Flow[..., Any]:
    """A copy of async ``flow`` whose body runs as its own asyncio task, kept in ``bodies``
    under the run's id while it runs: cancelling that task ends the run Cancelled. A sync
    flow is returned as it is (the engine runs it; it cannot be cancelled mid-run)."""
    body = flow.fn
    if not asyncio.iscoroutinefunction(body):
        return flow

    @functools.wraps(body)
    async def run_body(*args: Any, **kwargs: Any) -> Any:
        run_id = FlowRunContext.get().flow_run.id
        bodies[run_id] = task = asyncio.ensure_future(body(*args, **kwargs))
        try:
            return await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # the worker itself is stopping
                raise
            return Cancelled(message=message)
        finally:
            bodies.pop(run_id, None)

    wrapped = copy.copy(flow)
    wrapped.fn = run_body
    return wrapped


class WarmWorker(BaseWorker[BaseJobConfiguration, BaseVariables, WarmWorkerResult]):
    """Runs each claimed flow run as a task of this process's event loop."""

    type = WORKER_TYPE
    job_configuration = BaseJobConfiguration
    job_configuration_variables = BaseVariables
    _description = "Runs dragonflow flow runs in a long-lived, warm Python process."

    @classmethod
    def get_default_base_job_template(cls) -> dict[str, Any]:
        """None: the worker starts no infrastructure, so runs have no job variables (with
        a template, Prefect validates every created run's job variables against it with
        jsonschema, ~10 ms of server CPU per run)."""
        return {}

    def __init__(self, *args: Any, **kwargs: Any):
        require_prefect("the warm worker (BaseWorker private members)")
        super().__init__(*args, **kwargs)
        self._flows: dict[UUID, Flow[..., Any]] = {}
        self._bodies: dict[UUID, asyncio.Task[Any]] = {}
        self._wake = asyncio.Event()
        self._backlog = False  # the last pickup left runs waiting (or was skipped: no free slot)

    async def _flow_for(self, flow_run: FlowRun) -> Flow[..., Any]:
        deployment_id = flow_run.deployment_id
        if deployment_id not in self._flows:
            deployment = await self.client.read_deployment(deployment_id)
            self._flows[deployment_id] = cancellable(
                load_entrypoint(deployment.entrypoint), self._bodies, f"stopped by worker {self.name}"
            )
        return self._flows[deployment_id]

    async def _get_scheduled_flow_runs(self) -> list[WorkerFlowRunResponse]:
        """At most as many scheduled runs as there are free slots, none when all are taken
        (Prefect's worker asks for up to 200 runs on every poll, which made each pickup of a
        large batch cost the server ~50 ms). A finished run wakes the pickup only when this
        left runs waiting: otherwise the next Scheduled event does."""
        free = int(self._limiter.available_tokens) if self._limiter else DEFAULT_PICKUP
        if free < 1:
            self._backlog = True  # runs may be waiting: ask again when a slot frees
            return []
        scheduled_before = datetime.now(timezone.utc) + timedelta(seconds=self._prefetch_seconds)
        try:
            response = await self.client.request(
                "POST",
                "/work_pools/{name}/get_scheduled_flow_runs",
                path_params={"name": self._work_pool_name},
                json={
                    "work_queue_names": list(self._work_queues),
                    "scheduled_before": scheduled_before.isoformat(),
                    "limit": free,
                },
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:  # the pool comes back with the next heartbeat
                return []
            raise
        runs = SCHEDULED_RUNS.validate_python(response.json())
        self._backlog = len(runs) >= free
        return runs

    async def _submit_run(self, flow_run: FlowRun) -> None:
        """Claim the run (Pending) and run it here; replaces the stock subprocess launch."""
        ended = False  # the run was claimed and its end recorded by the engine
        try:
            if await self._propose_pending_state(flow_run):
                if self._cancelling_observer is not None:
                    self._cancelling_observer.add_in_flight_flow_run_id(flow_run.id)
                await self.run(flow_run)
                ended = True
        except Exception as exc:
            self.get_flow_run_logger(flow_run).exception("The warm worker could not run this flow run")
            await self._propose_crashed_state(flow_run, f"the worker could not run the task: {exc}")
        finally:
            # After any beat of it (same events stream). A run whose end could not be
            # recorded (Prefect failing) is not released: its beats stop, and recover-run
            # runs it again or marks it Crashed.
            if ended:
                _emit(RELEASED, flow_run.id)
            self._release_limit_slot(flow_run.id)
            self._submitting_flow_run_ids.discard(flow_run.id)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)
            if self._backlog:  # a slot is free and runs were left waiting: take the next now
                self._wake.set()

    async def run(
        self,
        flow_run: FlowRun,
        configuration: BaseJobConfiguration | None = None,
        task_status: anyio.abc.TaskStatus[str] | None = None,
    ) -> WarmWorkerResult:
        """Run ``flow_run`` with Prefect's flow engine in this process (``run_claimed``:
        the engine without the calls whose answers the worker holds)."""
        flow = await self._flow_for(flow_run)
        if task_status is not None:
            task_status.started(str(flow_run.id))
        await run_claimed(flow, flow_run)
        return WarmWorkerResult(identifier=str(flow_run.id), status_code=0)

    async def _cancel_run(self, flow_run_id: UUID) -> None:
        """A run this worker holds went Cancelling: cancel its flow's body, which ends the
        run Cancelled. A run whose body has not started is left to Prefect's worker (it
        marks a pending run Cancelled)."""
        body = self._bodies.get(flow_run_id)
        if body is None:
            await super()._cancel_run(flow_run_id)
        else:
            self._logger.info("cancelling flow run %s", flow_run_id)
            body.cancel()

    async def beat(self, every: float) -> None:
        """Send a ``BEAT`` event for each run this worker holds every ``every`` seconds: the
        crash automation takes a run whose beats stop for ``heartbeat_timeout`` as orphaned
        (Prefect's own run heartbeats cannot beat faster than every 30 s)."""
        while True:
            for run_id in list(self._submitting_flow_run_ids):
                _emit(BEAT, run_id)
            await asyncio.sleep(every)

    async def listen_for_scheduled_runs(self) -> None:
        """Wake the pickup loop whenever Prefect says a run was scheduled (or awaits a retry).

        Never ends the worker: the subscriber gives up on some failures (a Prefect API
        process killed during the websocket handshake raises ``InvalidMessage``), and an
        exception here would cancel the worker's task group, runs in flight with it. It
        subscribes again after ``LISTEN_RETRY`` seconds (and wakes the pickup: runs may have
        been scheduled meanwhile); the fallback poll goes on meanwhile."""
        while True:
            scheduled = EventFilter(
                event=EventNameFilter(name=[f"prefect.flow-run.{name}" for name in PICKUP_STATES]),
                occurred=EventOccurredFilter(since=datetime.now(timezone.utc)),
            )
            try:
                async with get_events_subscriber(filter=scheduled, reconnection_attempts=1000) as events:
                    async for _ in events:
                        self._wake.set()
            except Exception as exc:  # noqa: BLE001 - any failure: subscribe again
                logger.warning("Prefect events unavailable (%s: %s): subscribing again in %g s",
                               type(exc).__name__, exc, LISTEN_RETRY)
            await asyncio.sleep(LISTEN_RETRY)
            self._wake.set()

    async def pick_up_when_woken(self) -> None:
        """Ask for work once per wake-up (events and finished runs coalesce). With runs left
        waiting, a freed slot waits ``REFILL_GATHER`` for others to free (each pickup costs
        the server a work-queue scan, ~25 ms of CPU); a new run is asked for at once."""
        while True:
            await self._wake.wait()
            if self._backlog:
                await asyncio.sleep(REFILL_GATHER)
            self._wake.clear()
            if not self.is_setup:
                continue
            try:
                await self.get_and_submit_flow_runs()
            except Exception as exc:  # the fallback poll keeps going
                logger.warning("pickup failed: %s", exc)


async def result_storage_settings() -> dict[Any, str]:
    """Our results block as Prefect's default result storage, when registered: otherwise
    the engine asks the server for its default (two blocking calls) in every run."""
    try:
        await LocalFileSystem.aload(RESULTS_BLOCK_NAME)
    except ValueError:
        logger.warning("block %s is not registered (run `dragonflow up` once): runs ask"
                       " the server for its default result storage", RESULTS_BLOCK)
        return {}
    return {PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: RESULTS_BLOCK}


async def serve_worker(name: str | None = None) -> None:
    """Run a warm worker against the configured Prefect API until cancelled."""
    settings = get_settings()
    # One Prefect client for every run's engine (no CA bundle, CSRF and version check per
    # run) and one suspension observer for every run (see deployments/suspension.py).
    async with AsyncClientContext.get_or_create(), shared_suspension_observer():
        overrides = {
            PREFECT_WORKER_QUERY_SECONDS: settings.worker_poll_seconds,
            PREFECT_WORKER_ENABLE_CANCELLATION: True,
            # The worker's own beats (``beat``) watch its runs; Prefect's flow-run heartbeats
            # (a thread and an event per run, every 180 s) would only add work to the server.
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            **await result_storage_settings(),
        }
        with temporary_settings(overrides):
            worker = WarmWorker(
                work_pool_name=settings.work_pool,
                name=name or f"warm-{socket.gethostname()}-{asyncio.get_running_loop().time():.0f}",
                limit=settings.worker_limit,
                prefetch_seconds=1,
                heartbeat_interval_seconds=10,
            )
            async with anyio.create_task_group() as group:
                group.start_soon(asyncio.to_thread, warm_up)
                group.start_soon(worker.listen_for_scheduled_runs)
                group.start_soon(worker.pick_up_when_woken)
                group.start_soon(worker.beat, settings.heartbeat_timeout / 3)
                await worker.start(printer=lambda *args: print(*args, file=sys.stderr))
                group.cancel_scope.cancel()

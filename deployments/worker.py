"""The warm worker: a real Prefect worker that runs flow runs inside its own process.

It claims runs from the work pool through the Prefect API like any worker (heartbeats,
shows in the UI's work pool, crash reporting), but instead of starting a subprocess per
run it imports the deployment's flow once and runs it with Prefect's flow engine in
this long-lived process, so a run does not pay a Python start-up.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
from typing import Any
from uuid import UUID

import anyio
from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from deployments.register import WORKER_TYPE
from flows.settings import get_settings


class WarmWorkerResult(BaseWorkerResult):
    """Outcome of one in-process run."""


def load_entrypoint(entrypoint: str) -> Flow[..., Any]:
    """The flow object an entrypoint (``package.module:name``) names."""
    module_name, _, attribute = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class WarmWorker(BaseWorker[BaseJobConfiguration, BaseVariables, WarmWorkerResult]):
    """Runs each claimed flow run as a task of this process's event loop."""

    type = WORKER_TYPE
    job_configuration = BaseJobConfiguration
    job_configuration_variables = BaseVariables
    _description = "Runs dragonflow flow runs in a long-lived, warm Python process."

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._flows: dict[UUID, Flow[..., Any]] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}

    async def _flow_for(self, flow_run: FlowRun) -> Flow[..., Any]:
        deployment_id = flow_run.deployment_id
        if deployment_id not in self._flows:
            deployment = await self.client.read_deployment(deployment_id)
            self._flows[deployment_id] = load_entrypoint(deployment.entrypoint)
        return self._flows[deployment_id]

    async def run(
        self,
        flow_run: FlowRun,
        configuration: BaseJobConfiguration,
        task_status: anyio.abc.TaskStatus[str] | None = None,
    ) -> WarmWorkerResult:
        flow = await self._flow_for(flow_run)
        identifier = f"{socket.gethostname()}:{flow_run.id}"
        with anyio.CancelScope() as scope:
            self._scopes[identifier] = scope
            if task_status is not None:
                task_status.started(identifier)
            try:
                await run_flow(flow, flow_run=flow_run, return_type="state")
            finally:
                self._scopes.pop(identifier, None)
        return WarmWorkerResult(identifier=identifier, status_code=0)

    async def kill_infrastructure(
        self, infrastructure_pid: str, configuration: BaseJobConfiguration, grace_seconds: int = 30
    ) -> None:
        """Cancel the in-process run (never the worker process itself)."""
        scope = self._scopes.get(infrastructure_pid)
        if scope is not None:
            scope.cancel()


async def serve_worker(name: str | None = None) -> None:
    """Run a warm worker against the configured Prefect API until cancelled."""
    settings = get_settings()
    with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: settings.worker_poll_seconds}):
        worker = WarmWorker(
            work_pool_name=settings.work_pool,
            name=name or f"warm-{socket.gethostname()}-{asyncio.get_running_loop().time():.0f}",
            limit=settings.worker_limit,
            prefetch_seconds=1,
            heartbeat_interval_seconds=10,
        )
        await worker.start(printer=lambda *args: print(*args, file=sys.stderr))

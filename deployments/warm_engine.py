"""Prefect's async flow engine as the warm worker runs a claimed run, two calls lighter.

Given a run the worker has just claimed (its Pending state accepted), Prefect 3.8.8's engine
updates the run (flow version, retry policy), updates it again (its name, when the flow
names its runs), sets Running and reads the run back before the flow's body starts. Two of
those calls ask the server for nothing it does not already know here:

- the run's name goes into the first update (``flow.run_name_for(run_id)``, which
  ``flows.runtime.task_flow`` gives every task flow): one update instead of two;
- the read back is answered from the run as the engine's own calls left it, with what the
  server does on entering Running (``run_count`` + 1, ``start_time``, Prefect's
  ``IncrementFlowRunCount`` and ``SetStartTime``). Only the first read of an accepted
  Running is answered so; a resumed run and any later read go to the server.

Everything else (states, hooks, logs, results, cancellation, crashes) is Prefect's engine.
It overrides the engine's private client hand-over, so it requires Prefect 3.8.8.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import AsyncFlowRunEngine

from deployments.prefect_server import require_prefect


class _EngineClient(PrefectClient):
    """The worker's shared client as one run's engine sees it: the same connection (a
    shallow copy), with the engine's rename folded into its first update and its first read
    of the run answered from what the engine holds."""

    _engine: "WarmFlowRunEngine"
    _name: str | None
    _read_answered: bool

    @classmethod
    def view(cls, shared: PrefectClient, engine: "WarmFlowRunEngine", name: str | None) -> "_EngineClient":
        client = object.__new__(cls)
        client.__dict__.update(shared.__dict__)
        client._engine, client._name, client._read_answered = engine, name, False
        return client

    async def update_flow_run(self, flow_run_id: UUID, **fields: Any) -> Any:
        if self._name is not None and flow_run_id == self._engine.flow_run.id and fields.get("name") is None:
            fields["name"], self._name = self._name, None
            self._engine.flow_run.name = fields["name"]
        return await super().update_flow_run(flow_run_id, **fields)

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        run = self._engine.flow_run
        state = run.state if run is not None else None
        if (self._read_answered or run is None or flow_run_id != run.id or state is None or not state.is_running()
                or run.empirical_policy.resuming):
            return await super().read_flow_run(flow_run_id)
        self._read_answered = True
        return run.model_copy(update={
            "run_count": run.run_count + 1,
            "start_time": run.start_time or state.timestamp,
            "flow_version": self._engine.flow.version,
            "state_id": state.id,
        })


class WarmFlowRunEngine(AsyncFlowRunEngine):
    """``AsyncFlowRunEngine`` whose client is an ``_EngineClient`` view of the shared one."""

    _view: _EngineClient | None = None

    @property
    def client(self) -> PrefectClient:
        shared = super().client
        if self._view is None:
            name_for = getattr(self.flow, "run_name_for", None)
            name = name_for(self.flow_run.id) if name_for is not None and self.flow_run is not None else None
            self._view = _EngineClient.view(shared, self, name)
            if name is not None:
                self._flow_run_name_set = True  # sent with the first update
        return self._view


async def run_claimed(flow: Flow[..., Any], flow_run: FlowRun) -> Any:
    """Run ``flow_run`` (claimed: Pending) with ``WarmFlowRunEngine``; its final state
    (``prefect.flow_engine.run_flow_async`` with ``return_type="state"``)."""
    require_prefect("the warm flow engine (AsyncFlowRunEngine private members)")
    from prefect.flow_engine import _flow_parameters

    engine = WarmFlowRunEngine(flow=flow, flow_run=flow_run,
                               parameters=_flow_parameters(flow=flow, flow_run=flow_run, parameters=None))
    async with engine.start():
        while engine.is_running():
            async with engine.run_context():
                await engine.call_flow_fn()
    return engine.state

"""The run gateway: tasks as flow runs of their deployments, created (account limits
under the create lock, Prefect idempotency keys, per-run secrets) and read back. Both
surfaces use it: the Stupeflix one through ``api.stupeflix.tasks.TaskService`` (a
gateway), the VimQu one through ``create_planned``, ``views`` and ``cancel``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, TypeVar
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Cancelled, Cancelling, Failed
from pydantic import ValidationError

from api.create_lock import CreateLock
from api.errors import bad_request, unauthorized
from flows.contract import secrets
from flows.contract.keys import key_for, run_id_for
from flows.contract.runs import (
    ACCOUNT_TAG, INVALID_PARAMETERS, MAX_READ, RunView, account_of, read_runs, task_name_of,
)
from api.watcher import RunWatcher
from blocks.account import AccountBlock
from flows.params import parameter_errors

logger = logging.getLogger("dragonflow.gateway")
BULK_CREATE = 100  # Prefect's limit for one bulk create
BULK_ATTEMPTS = 10
PATIENCE = 120.0
T = TypeVar("T")
_ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]




def check_parameter_size(plans: list[Planned]) -> None:
    """400 naming the first task whose run parameters Prefect would refuse as too large
    (its ``PREFECT_SERVER_API_MAX_PARAMETER_SIZE``), and its longest value."""
    limit = get_current_settings().server.api.max_parameter_size
    if limit <= 0:
        return
    for index, plan in enumerate(plans):
        parameters = plan.parameters or {"params": plan.raw}
        size = len(json.dumps(parameters, separators=(",", ":"), default=str).encode())
        if size > limit:
            field, value = max(plan.raw.items(), key=lambda item: len(json.dumps(item[1], default=str)))
            raise bad_request(
                f"tasks.{index}",
                f"the task's parameters are {size} bytes once serialized, over the limit of {limit} bytes"
                f" (largest: {field}, {len(json.dumps(value, default=str))} bytes)",
            )


async def with_patience(call: Callable[[], Awaitable[T]], budget: float = PATIENCE) -> T:
    """``call()``, retried while the Prefect server answers 503 (a busy SQLite database),
    for up to ``budget`` seconds, so that a large create does not lose tasks under load."""
    deadline = time.monotonic() + budget
    delay = 0.2
    while True:
        try:
            return await call()
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 503 or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


@dataclass
class Planned:
    """One task definition ready to create: its run's parameters, tags and idempotency
    key, or why its parameters are invalid."""

    task_name: str
    raw: dict[str, Any]
    tags: list[str]
    idempotency_key: str | None = None
    parameters: dict[str, Any] | None = None
    error: ValidationError | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    """Tokens moved out of ``parameters`` into the Secret block ``parameters.params.secrets``."""


def prefect_idempotency_key(account: str, key: str | None, index: int) -> str | None:
    """The Prefect flow-run idempotency key of a request's ``index``-th task, for a request
    made with ``Idempotency-Key: key`` (Prefect keeps one run per flow and key)."""
    return f"{account}:{hashlib.sha256(key.encode()).hexdigest()[:32]}#{index}" if key else None


def is_final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()



class RunGateway:
    """Flow runs on the Prefect server seen as tasks, for both surfaces: creating them
    from their deployments (limits, idempotency, secrets) and reading them back."""

    def __init__(self, client: PrefectClient, watcher: RunWatcher | None = None):
        self.client = client
        self.watcher = watcher
        self._deployments: dict[str, UUID] = {}
        self.create_lock = CreateLock()


    async def deployment_id(self, task_name: str) -> UUID:
        if task_name not in self._deployments:
            deployment = await self.client.read_deployment_by_name(f"{task_name}/{task_name}")
            self._deployments[task_name] = deployment.id
        return self._deployments[task_name]


    async def keep_secrets(self, plans: list[Planned]) -> None:
        """Save the tokens of ``plans`` in their runs' Secret blocks."""
        for plan in plans:
            if plan.secrets and plan.parameters:
                await with_patience(lambda: secrets.keep(plan.parameters["params"]["secrets"], plan.secrets,
                                                         self.client))


    async def forget_secrets(self, plans: list[Planned]) -> None:
        for plan in plans:
            if plan.secrets and plan.parameters:
                await secrets.forget_quietly(plan.parameters["params"]["secrets"])


    async def create_runs(self, plans: list[Planned], account: str) -> tuple[list[UUID], list[FlowRun]]:
        """Run ids in ``plans`` order, and the runs Prefect answered with in full.

        Tasks of one kind are created together (Prefect's bulk create, one transaction per
        ``BULK_CREATE`` runs); a task with invalid parameters becomes a run that is already
        ``error``."""
        ids: list[UUID | None] = [None] * len(plans)
        answered: list[FlowRun] = []
        by_task: dict[str, list[int]] = {}
        for index, plan in enumerate(plans):
            if plan.error is not None:
                deployment_id = await self.deployment_id(plan.task_name)
                ids[index] = (await self._create_invalid(deployment_id, plan, account)).id
            else:
                by_task.setdefault(plan.task_name, []).append(index)
        for task_name, indexes in by_task.items():
            deployment_id = await self.deployment_id(task_name)
            for start in range(0, len(indexes), BULK_CREATE):
                chunk = indexes[start : start + BULK_CREATE]
                if len(chunk) > 1:
                    await self._bulk_create(deployment_id, plans, chunk, ids)
                for index in chunk:
                    if ids[index] is None:  # alone, or refused by every bulk attempt
                        run = await self._create(deployment_id, plans[index])
                        answered.append(run)
                        ids[index] = run.id
        return ids, answered


    async def _create(self, deployment_id: UUID, plan: Planned, state: State | None = None) -> FlowRun:
        return await with_patience(lambda: self.client.create_flow_run_from_deployment(
            deployment_id, parameters=plan.parameters, tags=plan.tags, state=state,
            idempotency_key=plan.idempotency_key,
        ))


    async def _bulk_create(
        self, deployment_id: UUID, plans: list[Planned], indexes: list[int], ids: list[UUID | None]
    ) -> None:
        """Create the runs of ``plans[i] for i in indexes`` in bulk calls, filling ``ids``.

        A stock Prefect server on SQLite refuses a bulk insert run by run ("database is
        locked") when another writer commits between its first read and its first write
        (the embedded server takes the write lock first, see deployments/prefect_server.py);
        the refused ones are tried again, a few times, in a new bulk call. Prefect's client
        has no method for this endpoint."""
        pending = indexes
        for attempt in range(BULK_ATTEMPTS):
            runs = [
                DeploymentFlowRunCreate(
                    parameters=plans[i].parameters, tags=plans[i].tags, idempotency_key=plans[i].idempotency_key
                )
                for i in pending
            ]
            response = await with_patience(lambda: self.client.request(
                "POST", "/deployments/{id}/create_flow_run/bulk", path_params={"id": deployment_id},
                json=[run.model_dump(mode="json", exclude_unset=True) for run in runs],
            ))
            refused = []
            for index, result in zip(pending, response.json()["results"]):
                if result["status"] == "CREATED":
                    ids[index] = UUID(result["flow_run_id"])
                else:
                    refused.append(index)
                    error = result.get("error") or ""
            if not refused:
                return
            logger.info("bulk create: %d of %d runs refused (%s), trying again",
                        len(refused), len(pending), error.splitlines()[0][:200])
            pending = refused
            await asyncio.sleep(0.02 * (attempt + 1))


    async def _create_invalid(self, deployment_id: UUID, plan: Planned, account: str) -> FlowRun:
        """A run recorded as failed at once, so the client gets a key and an error status
        (its errback is sent by the automation for failed runs)."""
        error = {"parameters": parameter_errors(plan.error)}
        run = await with_patience(lambda: self.client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"params": plan.raw, "account": account},
            tags=plan.tags,
            state=Failed(name=INVALID_PARAMETERS, message=json.dumps(error)),
            idempotency_key=plan.idempotency_key,
        ))
        await with_patience(lambda: self.client.set_flow_run_name(run.id, key_for(run.id)))
        return run


    async def check_limits(self, account: AccountBlock, count: int) -> None:
        """401 when ``count`` more tasks would exceed the account's limits."""
        tag = FlowRunFilterTags(all_=[ACCOUNT_TAG + account.name])
        if account.max_concurrent:
            active = await self.client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=tag, state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_ACTIVE))
                )
            )
            if active + count > account.max_concurrent:
                raise unauthorized(
                    f"account limits reached: {active} tasks running or queued, limit {account.max_concurrent}"
                )
        if account.max_per_day:
            since = datetime.now(timezone.utc) - timedelta(days=1)
            today = await self.client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=tag, expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
                )
            )
            if today + count > account.max_per_day:
                raise unauthorized(
                    f"account limits reached: {today} tasks in the last 24 h, limit {account.max_per_day}"
                )


    async def repeated(self, plans: list[Planned]) -> dict[str, UUID]:
        """Idempotency key -> run id, for the plans a previous request already created."""
        wanted = {p.idempotency_key: p.task_name for p in plans if p.idempotency_key}
        keys, found = list(wanted), {}
        for start in range(0, len(keys), BULK_CREATE):
            same_keys = FlowRunFilterIdempotencyKey(any_=keys[start : start + BULK_CREATE])
            runs = await self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(idempotency_key=same_keys), limit=MAX_READ
            )
            found.update({r.idempotency_key: r.id for r in runs if task_name_of(r) == wanted[r.idempotency_key]})
        return found


    async def create_planned(
        self,
        plans: list[Planned],
        account: AccountBlock,
        check: Callable[[AccountBlock, int], Awaitable[None]] | None = None,
    ) -> tuple[list[UUID], dict[UUID, FlowRun]]:
        """Create the runs of ``plans`` (made by ``plan``, or by another surface with its own
        parameters and tags): run ids in ``plans`` order, and the runs Prefect answered with
        in full. ``check(account, count)`` (default: the account's limits) runs inside the
        create lock with no create in flight; plans whose idempotency key already made a run
        answer that run."""
        limited = check is not None or bool(account.max_concurrent or account.max_per_day)
        check = check or self.check_limits
        async with self.create_lock.hold(account.name, limited):  # limits counted with no create in flight
            done = await self.repeated(plans)
            todo = [p for p in plans if p.idempotency_key not in done]
            if todo:
                await check(account, len(todo))
            await self.keep_secrets(todo)
            try:
                created, answered = await self.create_runs(todo, account.name)
            except BaseException:
                await self.forget_secrets(todo)
                raise
        if self.watcher:  # new runs need no read back for the first status answer
            self.watcher.remember([r for r in answered if r.state.is_scheduled() and not r.run_count])
        new = iter(created)
        ids = [done[p.idempotency_key] if p.idempotency_key in done else next(new) for p in plans]
        return ids, {run.id: run for run in answered}


    async def views(self, run_ids: list[UUID], account: str) -> dict[UUID, RunView]:
        """Run id -> run view for the ids that name a run of ``account``."""
        found = await (self.watcher.current(run_ids) if self.watcher else read_runs(self.client, run_ids))
        return {run_id: view for run_id, view in found.items() if account_of(view.run) == account}


    async def cancel(self, run: FlowRun, message: str = "cancelled by its client") -> None:
        """Cancel a task's run: a run no worker has claimed yet ends Cancelled at once; a
        claimed or running one is set Cancelling, and its worker stops it (as the UI's
        Cancel button does)."""
        state = run.state
        if state is not None and state.type in (StateType.SCHEDULED, StateType.PAUSED) and not run.run_count:
            result = await with_patience(lambda: self.client.set_flow_run_state(run.id, Cancelled(message=message)))
            if result.status == SetStateStatus.ACCEPT:
                return
        await with_patience(lambda: self.client.set_flow_run_state(run.id, Cancelling(message=message), force=True))


    async def read(self, keys: list[str], account: str) -> dict[str, RunView]:
        """key -> run view for the keys that name a run of ``account``."""
        ids = {key: run_id_for(key) for key in keys}
        found = await self.views([i for i in ids.values() if i is not None], account)
        return {key: found[run_id] for key, run_id in ids.items() if run_id in found}


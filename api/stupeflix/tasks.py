"""The Stupeflix surface's tasks (v1, v2 and ``dragonflow run``): task definitions checked
and planned with the API version's defaults, statuses rendered in the version's shape,
answered at once, when done (``block``) or as a stream of changes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, State
from prefect.settings import PREFECT_UI_URL
from pydantic import ValidationError

from api.errors import bad_request
from api.gateway import Planned, RunGateway, check_parameter_size, is_final, prefect_idempotency_key
from blocks.account import AccountBlock
from flows.contract import secrets
from flows.contract.runs import RunView, run_tags
from flows.contract.stupeflix import stupeflix_status, unknown_status
from flows.registry import TASKS
from flows.settings import get_settings

RESERVED = {"task_name", "secret", "api_key", "secrets"}  # secrets: set by plan() only
V1_STORE = {"type": "volatile"}


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for echoing client input in an error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_definitions(tasks: Any) -> list[dict[str, Any]]:
    """``tasks`` as a list of task definitions (one object is accepted too), or 400."""
    if tasks is None:
        raise bad_request("tasks", "tasks is missing")
    definitions = tasks if isinstance(tasks, list) else [tasks]
    if not definitions:
        raise bad_request("tasks", "tasks is empty")
    limit = get_settings().api_max_tasks_per_create  # 10,000 would hold every client's create for minutes
    if len(definitions) > limit:
        raise bad_request("tasks", f"{len(definitions)} tasks in one request, over the limit of"
                                   f" {limit} (DRAGONFLOW_API_MAX_TASKS_PER_CREATE): send them in several requests")
    for index, definition in enumerate(definitions):
        if not isinstance(definition, dict):
            raise bad_request(f"tasks.{index}", "a task definition must be a JSON object")
        name = definition.get("task_name")
        if not isinstance(name, str) or name not in TASKS:
            known = ", ".join(sorted(TASKS))
            raise bad_request(f"tasks.{index}.task_name", f"unknown task_name {shown(name)}; known tasks: {known}")
    return definitions


def with_version_defaults(definition: dict[str, Any], version: str) -> dict[str, Any]:
    """The task's parameters with the API version's defaults filled in (v1: volatile store)."""
    raw = {k: v for k, v in definition.items() if k not in RESERVED}
    if version == "v1":
        for name, value in {"task_store": V1_STORE, **TASKS[definition["task_name"]].v1_defaults}.items():
            raw.setdefault(name, value)
    return raw



class TaskService(RunGateway):
    """The Stupeflix surface's tasks (v1, v2, ``dragonflow run``): definitions planned with
    the version's defaults, statuses rendered in its shapes, blocking and streamed."""

    def plan(
        self, definition: dict[str, Any], account: str, version: str, idempotency_key: str | None = None
    ) -> Planned:
        """What to create for one task definition (parameters validated here)."""
        spec = TASKS[definition["task_name"]]
        raw = with_version_defaults(definition, version)
        errback = isinstance(raw.get("url_errback"), str)
        planned = Planned(spec.name, raw, run_tags(spec.name, account, version, errback=errback), idempotency_key)
        try:
            params, planned.secrets = secrets.conceal(spec.params.model_validate(raw))
        except ValidationError as exc:
            planned.error = exc
            planned.raw = secrets.redact(raw, spec.params)
        else:
            if planned.secrets:
                params["secrets"] = secrets.new_name()
            planned.parameters = {"params": params, "account": account}
        return planned


    async def create_one(self, definition: dict[str, Any], account: str, *, state: State | None = None) -> FlowRun:
        """Queue one task in ``state`` (default Scheduled; ``dragonflow run`` claims its run
        with Pending); invalid parameters give a run that is already ``error``."""
        plan = self.plan(definition, account, "v2")
        check_parameter_size([plan])
        deployment_id = await self.deployment_id(plan.task_name)
        if plan.error is not None:
            return await self._create_invalid(deployment_id, plan, account)
        await self.keep_secrets([plan])
        try:
            return await self._create(deployment_id, plan, state)
        except BaseException:
            await self.forget_secrets([plan])
            raise


    async def create(
        self,
        definitions: list[dict[str, Any]],
        account: AccountBlock,
        *,
        version: str = "v2",
        idempotency_key: str | None = None,
    ) -> list[UUID]:
        """Queue tasks; run ids in request order. With an ``idempotency_key``, a repeated
        request answers the runs the first one created (Prefect's flow-run idempotency
        keys: one run per key for as long as the run exists, even for concurrent repeats)."""
        plans = [
            self.plan(d, account.name, version, prefect_idempotency_key(account.name, idempotency_key, i))
            for i, d in enumerate(definitions)
        ]
        check_parameter_size(plans)
        ids, _ = await self.create_planned(plans, account)
        return ids


    def render(self, key: str, entry: RunView | None, *, version: str, details: bool = False) -> dict[str, Any]:
        if entry is None:
            return unknown_status(key, version)
        ui = PREFECT_UI_URL.value()
        return stupeflix_status(
            entry,
            version=version,
            details=details,
            ui_url=f"{ui}/runs/flow-run/{entry.run.id}" if ui else None,
        )


    async def statuses(
        self,
        keys: list[str],
        account: str,
        *,
        version: str = "v2",
        details: bool = False,
        block: bool = False,
        timeout: float = 3600.0,
    ) -> list[dict[str, Any]]:
        """Statuses for ``keys`` in order; with ``block``, once every task has ended."""
        found = await self.read(keys, account)
        if block and self.watcher and any(not is_final(view.run) for view in found.values()):
            async for _ in self.changes(found, timeout=timeout):
                pass
        return [self.render(key, found.get(key), version=version, details=details) for key in keys]


    async def changes(self, found: dict[str, RunView], *, timeout: float) -> AsyncIterator[str]:
        """Update ``found`` in place as its runs change; yields the key of each change,
        until every run has ended (or ``timeout``)."""
        by_id = {view.run.id: key for key, view in found.items()}
        deadline = time.monotonic() + timeout
        async with self.watcher.subscribe(list(by_id)) as queue:
            while any(not is_final(view.run) for view in found.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    view = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    return
                key = by_id[view.run.id]
                found[key] = view
                yield key


    async def stream(
        self, keys: list[str], account: str, *, version: str, timeout: float = 3600.0
    ) -> AsyncIterator[str]:
        """Newline-delimited JSON: the current statuses, then each status change (and each
        partial result published between two reads, so none is skipped)."""
        found = await self.read(keys, account)
        sent = {key: self.render(key, found.get(key), version=version) for key in keys}
        shown = {key: view.result_ids() for key, view in found.items()}
        yield json.dumps(list(sent.values())) + "\n"
        async for key in self.changes(found, timeout=timeout):
            view = found[key]
            for earlier in view.partials_after(shown[key]):
                yield json.dumps(self.render(key, earlier, version=version)) + "\n"
            shown[key] = view.result_ids()
            status = self.render(key, view, version=version)
            if status != sent[key]:
                sent[key] = status
                yield json.dumps(status) + "\n"


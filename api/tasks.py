"""Creating tasks as flow runs of their deployments, and reading their statuses back.

Shared by the REST API and ``dragonflow run``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.settings import PREFECT_UI_URL
from prefect.states import Failed
from pydantic import ValidationError

from api.errors import bad_request
from api.keys import key_for, run_id_for
from api.status import ACCOUNT_TAG, INVALID_PARAMETERS, account_of, build_status, read_runs
from flows.params import parameter_errors
from flows.registry import TASKS
from flows.steps.notify import post_status

POLL_SECONDS = 0.05
RESERVED = {"task_name", "secret", "api_key"}


def unknown_status(key: str, version: str) -> dict[str, Any]:
    """The status of a key that does not decode or names no task of the account."""
    return {
        "status": "error",
        "key": key,
        "progress": None,
        "events": {},
        "result" if version == "v1" else "error": "unknown task key",
    }


def check_definitions(tasks: Any) -> list[dict[str, Any]]:
    """``tasks`` as a list of task definitions (one object is accepted too), or 400."""
    if tasks is None:
        raise bad_request("tasks", "tasks is missing")
    definitions = tasks if isinstance(tasks, list) else [tasks]
    if not definitions:
        raise bad_request("tasks", "tasks is empty")
    for index, definition in enumerate(definitions):
        if not isinstance(definition, dict):
            raise bad_request(f"tasks.{index}", "a task definition must be a JSON object")
        name = definition.get("task_name")
        if name not in TASKS:
            known = ", ".join(sorted(TASKS))
            raise bad_request(f"tasks.{index}.task_name", f"unknown task_name {name!r}; known tasks: {known}")
    return definitions


class TaskService:
    """Flow runs on the Prefect server seen as Stupeflix tasks."""

    def __init__(self, client: PrefectClient):
        self.client = client
        self._deployments: dict[str, UUID] = {}

    async def deployment_id(self, task_name: str) -> UUID:
        if task_name not in self._deployments:
            deployment = await self.client.read_deployment_by_name(f"{task_name}/{task_name}")
            self._deployments[task_name] = deployment.id
        return self._deployments[task_name]

    async def create_one(
        self, definition: dict[str, Any], account: str, state: State | None = None
    ) -> FlowRun:
        """Queue one task (``state``: initial state, default Scheduled); parameter errors
        give a run that is already ``error``."""
        spec = TASKS[definition["task_name"]]
        raw = {k: v for k, v in definition.items() if k not in RESERVED}
        tags = [spec.name, ACCOUNT_TAG + account]
        deployment_id = await self.deployment_id(spec.name)
        try:
            params = spec.params.model_validate(raw).model_dump(mode="json")
        except ValidationError as exc:
            error = {"parameters": parameter_errors(exc)}
            run = await self.client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"params": raw, "account": account},
                tags=tags,
                state=Failed(name=INVALID_PARAMETERS, message=json.dumps(error)),
            )
            await self.client.set_flow_run_name(run.id, key_for(run.id))
            if isinstance(raw.get("url_errback"), str):
                found = await read_runs(self.client, [run.id])
                asyncio.create_task(post_status(raw["url_errback"], build_status(*found[run.id])))
            return run
        return await self.client.create_flow_run_from_deployment(
            deployment_id, parameters={"params": params, "account": account}, tags=tags, state=state
        )

    async def create(self, definitions: list[dict[str, Any]], account: str) -> list[UUID]:
        """Queue tasks; run ids in request order."""
        runs = await asyncio.gather(*(self.create_one(d, account) for d in definitions))
        return [run.id for run in runs]

    async def statuses(
        self,
        keys: list[str],
        account: str,
        *,
        version: str = "v2",
        details: bool = False,
        block: bool = False,
        timeout: float = 600.0,
    ) -> list[dict[str, Any]]:
        """Statuses for ``keys`` in order; with ``block``, once every task has ended."""
        ids = {key: run_id_for(key) for key in keys}
        wanted = [i for i in ids.values() if i is not None]
        deadline = time.monotonic() + timeout
        while True:
            found = {
                run_id: entry
                for run_id, entry in (await read_runs(self.client, wanted)).items()
                if account_of(entry[0]) == account
            }
            pending = [r for r, _ in found.values() if r.state is None or not r.state.is_final()]
            if not block or not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        ui = PREFECT_UI_URL.value()
        return [
            build_status(
                *found[ids[key]],
                version=version,
                details=details,
                ui_url=f"{ui}/runs/flow-run/{ids[key]}" if ui else None,
            )
            if ids[key] in found
            else unknown_status(key, version)
            for key in keys
        ]

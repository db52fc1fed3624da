"""VimQu task and profile routes (seed 003), under ``/api/`` with ``Authorization: Bearer``.

- ``POST /api/task``: one input, many outputs -> **201** ``{"data": <Common Task Result
  Object>}`` (status ``active``). The body is validated by the flow's own parameter model
  (``VIMQU_TASK.params``: every field error named, ``outputs.0.type_specific_config.width``),
  each ``storage_id`` must be one of the account's registered storages, and the input is
  checked (``api.vimqu.inputs``) -> 422 otherwise; the task's credits estimate must be left
  (``api.vimqu.limits``) -> 402 otherwise. The run is created from the ``vimqu.task``
  deployment with the contract's parameters (``flows.contract.vimqu``): output ids are new
  uuid4s, each output carries a snapshot of its storage ``{id, name, driver}``. An
  ``Idempotency-Key`` header makes a repeated request answer the first one's task.
- ``GET /api/task/{id}``, ``GET /api/tasks`` (``status``, ``created_from``/``created_to``,
  ``page``/``per_page``; newest first; ``{"data": [...], "meta": {page, per_page, total}}``),
  ``POST /api/task/{id}/cancel`` (the run is cancelled through Prefect: at once when no worker
  has it, else set Cancelling and stopped by its worker; the answer waits up to
  ``CANCEL_WAIT`` seconds for status ``canceled``).
- ``GET /api/profile``: the account, its credits and its rate limit.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, time as day_time, timedelta, timezone
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from prefect.client.schemas.filters import (
    FlowRunFilter, FlowRunFilterExpectedStartTime, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import ValidationError

from api.gateway import Planned, prefect_idempotency_key
from api.vimqu.auth import current_account
from api.vimqu.body import read_json
from api.vimqu.errors import VimquError, bad_request, invalid, not_found, payment_required
from api.vimqu.inputs import InputProblem, check_storage_input, check_url_input
from api.vimqu.limits import CREDITS_TAG, SURFACE, estimate
from blocks.account import AccountBlock
from blocks.registered import RegisteredStorage, StorageNotFound, load_registered
from flows.contract.runs import (
    ACCOUNT_TAG, MAX_READ, SURFACE_TAG, RunView, read_runs, run_tags, surface_of,
)
from flows.contract.vimqu import vimqu_task
from flows.registry import VIMQU_TASK

router = APIRouter(prefix="/api", tags=["vimqu"])
CANCEL_WAIT = 10.0
PER_PAGE = 20
MAX_PER_PAGE = 100
STATUSES = ("active", "processing", "completed", "canceled", "failed")
_SCHEDULED = [StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED]
STATE_TYPES = {  # the Prefect states a status can come from (the renderer decides)
    "active": _SCHEDULED,
    "processing": [StateType.RUNNING, StateType.CANCELLING, StateType.SCHEDULED],
    "completed": [StateType.COMPLETED],
    "canceled": [StateType.CANCELLED],
    "failed": [StateType.FAILED, StateType.CRASHED, StateType.COMPLETED],
}


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """pydantic's errors as ``{"outputs.0.type": [messages]}``."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if message not in errors.setdefault(name, []):
            errors[name].append(message)
    return errors


def snapshot(storage: RegisteredStorage) -> dict[str, str]:
    return {"id": storage.storage_id, "name": storage.name, "driver": storage.driver}


async def _storages(ids: set[str], account: str) -> dict[str, RegisteredStorage | None]:
    async def one(storage_id: str) -> RegisteredStorage | None:
        try:
            return await load_registered(storage_id, account)
        except StorageNotFound:
            return None

    found = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, found))


async def task_parameters(body: Any, account: AccountBlock) -> tuple[dict[str, Any], RegisteredStorage | None]:
    """The run's ``params`` (the contract's shape) from a create request, and the input's
    storage; 422 naming each field at fault."""
    if not isinstance(body, dict):
        raise bad_request("Bad Request: the request body must be a JSON object with input and outputs")
    outputs = body.get("outputs")
    params: dict[str, Any] = {"input": body.get("input"), "outputs": outputs, "webhook_url": body.get("webhook_url"),
                              "webhook_per_output": body.get("webhook_per_output", False)}
    errors: dict[str, list[str]] = {}
    if params["input"] is None:
        errors["input"] = ["The input field is required."]
        params.pop("input")
    if isinstance(outputs, list):
        params["outputs"] = [
            {key: value for key, value in output.items() if key not in ("id", "storage")} | {"id": str(uuid.uuid4())}
            if isinstance(output, dict) else output
            for output in outputs
        ]
    elif outputs is None:
        errors["outputs"] = ["The outputs field is required."]
        params.pop("outputs")
    try:
        VIMQU_TASK.params.model_validate(params)
    except ValidationError as exc:
        for name, messages in field_errors(exc).items():
            errors.setdefault(name, messages)
    # storages: each must be one of the account's
    task_input = params.get("input") if isinstance(params.get("input"), dict) else {}
    wanted = {}
    if task_input.get("source_type") == "storage" and isinstance(task_input.get("storage_id"), str):
        wanted["input.storage_id"] = task_input["storage_id"]
    for index, output in enumerate(params.get("outputs") if isinstance(params.get("outputs"), list) else []):
        if isinstance(output, dict) and isinstance(output.get("storage_id"), str) and output["storage_id"]:
            wanted[f"outputs.{index}.storage_id"] = output["storage_id"]
    storages = await _storages(set(wanted.values()), account.name)
    for name, storage_id in wanted.items():
        if storages[storage_id] is None:
            errors.setdefault(name, []).append(f"storage {storage_id} not found: register it with POST /api/storages")
        elif name.startswith("outputs."):
            params["outputs"][int(name.split(".")[1])]["storage"] = snapshot(storages[storage_id])
    if errors:
        raise invalid(errors)
    for output in params["outputs"]:
        if output.get("type") == "mpeg_dash":
            output["type"] = "dash"
        output.setdefault("reference_id", None)
        output.setdefault("type_specific_config", {})
    params.setdefault("webhook_url", None)
    return params, storages.get(wanted.get("input.storage_id", ""))


async def check_input(params: dict[str, Any], storage: RegisteredStorage | None) -> None:
    """422 naming the input and why it cannot be used."""
    task_input = params["input"]
    try:
        if task_input["source_type"] == "url":
            await check_url_input(task_input["path"])
        else:
            await check_storage_input(storage, task_input["path"])
    except InputProblem as exc:
        where = task_input["path"]
        raise invalid({"input.path": [f"the input {where} cannot be used: {exc}"]},
                      f"The input {where} cannot be used: {exc}") from None


def render(view: RunView) -> dict[str, Any]:
    return vimqu_task(view)


def task_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise not_found("task", value) from None


async def read_task(request: Request, value: str, account: AccountBlock) -> RunView:
    """The account's VimQu task ``value``, or 404 (unknown, or another account's)."""
    run_id = task_id(value)
    found = await request.app.state.tasks.views([run_id], account.name)
    view = found.get(run_id)
    if view is None or surface_of(view.run) != SURFACE:
        raise not_found("task", value)
    return view


@router.post("/task", status_code=201)
async def create_task(request: Request, response: Response,
                      account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """Create a task: one input, many outputs (seed 003); 201 with its result object."""
    params, storage = await task_parameters(await read_json(request), account)
    await check_input(params, storage)
    credits = request.app.state.vimqu_credits
    needed = estimate(params["outputs"])

    async def check(account: AccountBlock, count: int) -> None:
        left = (await credits.left(account))["minutes_left"]
        if left < needed * count:
            raise payment_required(f"Payment Required: this task needs {needed} credit minutes, {left:g} left")

    webhook = bool(params.get("webhook_url") or account.webhook_url)
    plan = Planned(
        VIMQU_TASK.name, params,
        run_tags(VIMQU_TASK.name, account.name, SURFACE, errback=webhook) + [f"{CREDITS_TAG}{needed}"],
        prefect_idempotency_key(account.name, request.headers.get("idempotency-key"), 0),
        parameters={"params": params, "account": account.name},
    )
    service = request.app.state.tasks
    ids, answered = await service.create_planned([plan], account, check)
    run = answered.get(ids[0])
    if run is None:  # a repeated request: its first task
        response.status_code = 200
        return {"data": render(await read_task(request, str(ids[0]), account))}
    return {"data": render(RunView(run))}


@router.get("/task/{task}")
async def get_task(request: Request, task: str, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """One task's result object."""
    return {"data": render(await read_task(request, task, account))}


@router.post("/task/{task}/cancel")
async def cancel_task(request: Request, task: str, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """Cancel a task that has not ended; its result object (status ``canceled`` once its run
    has stopped; ``processing`` while its worker stops it)."""
    view = await read_task(request, task, account)
    if view.phase.is_final:
        data = render(view)
        if data["status"] == "canceled":
            return {"data": data}
        raise VimquError(422, f"The task has already ended ({data['status']}): it cannot be canceled",
                         {"status": [f"is {data['status']}"]})
    service = request.app.state.tasks
    await service.cancel(view.run, "canceled through the VimQu API")
    found = {task: (await service.views([view.run.id], account.name))[view.run.id]}
    if not found[task].phase.is_final and service.watcher:
        async for _ in service.changes(found, timeout=CANCEL_WAIT):
            pass
    return {"data": render(found[task])}


def _moment(value: str | None, name: str, end: bool) -> datetime | None:
    """A date (``2022-01-06``: the whole day) or date time; UTC when it has no zone."""
    if value in (None, ""):
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1) if end else day, day_time())
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise invalid({name: [f"must be a date (2022-01-06) or a date time (2022-01-06 10:55:31), got {value!r}"]})
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _positive(value: str | None, name: str, default: int, top: int | None = None) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or (top and number > top):
        raise invalid({name: [f"must be a whole number from 1{f' to {top}' if top else ''}, got {value!r}"]})
    return number


@router.get("/tasks")
async def list_tasks(request: Request, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """The account's tasks, newest first: ``status``, ``created_from``, ``created_to``,
    ``page``, ``per_page``."""
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise invalid({"status": [f"must be one of {', '.join(STATUSES)}"]})
    start, end = _moment(query.get("created_from"), "created_from", False), _moment(query.get("created_to"),
                                                                                   "created_to", True)
    page = _positive(query.get("page"), "page", 1)
    per_page = _positive(query.get("per_page"), "per_page", PER_PAGE, MAX_PER_PAGE)
    runs_filter = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[ACCOUNT_TAG + account.name, SURFACE_TAG + SURFACE]),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=end) if start or end else None,
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=STATE_TYPES[status])) if status else None,
    )
    client = request.app.state.client
    sort = FlowRunSort.EXPECTED_START_TIME_DESC
    if status is None:  # every run is one task: Prefect pages and counts
        total = await client.count_flow_runs(flow_run_filter=runs_filter)
        runs = await client.read_flow_runs(flow_run_filter=runs_filter, sort=sort, limit=per_page,
                                           offset=(page - 1) * per_page)
        views = await read_runs(client, [r.id for r in runs])
        data = [render(views[r.id]) for r in runs if r.id in views]
    else:  # the status comes from the state and the outputs: render every candidate
        runs: list[FlowRun] = []
        while True:
            batch = await client.read_flow_runs(flow_run_filter=runs_filter, sort=sort, limit=MAX_READ,
                                                offset=len(runs))
            runs += batch
            if len(batch) < MAX_READ:
                break
        views = await read_runs(client, [r.id for r in runs])
        matching = [item for item in (render(views[r.id]) for r in runs if r.id in views)
                    if item["status"] == status]
        total, data = len(matching), matching[(page - 1) * per_page: page * per_page]
    return {"data": data, "meta": {"page": page, "per_page": per_page, "total": total}}


@router.get("/profile")
async def profile(request: Request, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """The account: name, credits left and the rate limit."""
    limiter = request.app.state.vimqu_limiter
    return {"data": {
        "account": account.name,
        "status": "active",
        "credits": await request.app.state.vimqu_credits.left(account),
        "rate_limit": {"per_minute": limiter.per_minute, "remaining": await limiter.remaining(request.state.vimqu_token)},
        "webhook_url": account.webhook_url,
        "webhook_signing": account.webhook_secret is not None,
    }}

"""v1 file methods (seed 001): create a task, wait for it, and redirect to an output file."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from api.errors import ApiError, bad_request
from flows.contract.keys import key_for
from api.stupeflix.routes import query_params, read_body, while_connected
from flows.contract.runs import task_name_of
from api.stupeflix.tasks import check_definitions
from flows.registry import TASKS

router = APIRouter(prefix="/v1", tags=["v1"])
AUTH_KEYS = {"secret", "api_key"}


def pick_output(task_name: str, filename: str | None) -> str:
    """The output file a ``filename`` selects: any name when the task has one output file,
    else the output whose name is the filename's stem (``thumbnail.jpg`` -> thumbnail)."""
    outputs = TASKS[task_name].outputs
    if not outputs:
        raise ApiError(404, "filename", "path", f"{task_name} produces no output file")
    if len(outputs) == 1:
        return outputs[0]
    stem = PurePosixPath(filename or "").stem
    if stem in outputs:
        return stem
    raise ApiError(404, "filename", "path", f"{filename!r} is not an output of {task_name}: one of {', '.join(outputs)}")


async def wait_and_redirect(request: Request, key: str, account: str, filename: str | None):
    """302 to the task's chosen output once it succeeds; 400 with its status if it fails."""
    service = request.app.state.tasks
    found = await service.read([key], account)
    if key not in found:
        raise ApiError(404, "task", "query", f"unknown task key {key!r}")
    output = pick_output(task_name_of(found[key].run), filename)
    status = (await service.statuses([key], account, version="v1", block=True))[0]
    if status["status"] != "success":
        return JSONResponse(status, status_code=400)
    url = (status.get("result") or {}).get(output)
    if not url:
        raise ApiError(404, "filename", "path", f"the task has no {output!r} file")
    return RedirectResponse(url, status_code=302)


async def create_file(request: Request, task: Any, filename: str | None, credentials: dict[str, Any]):
    account = await request.app.state.accounts.authenticate(request, credentials)
    if task is None:
        raise bad_request("task", "task is missing")
    definition = check_definitions(task)[0]
    pick_output(definition["task_name"], filename)
    run_ids = await request.app.state.tasks.create([definition], account, version="v1")
    return await while_connected(request, wait_and_redirect(request, key_for(run_ids[0]), account.name, filename))


@router.get("/create_file")
@router.get("/create_file/{filename}")
async def create_file_get(request: Request, filename: str | None = None):
    """Create the task named by ``?task_name=`` with the other query parameters, wait,
    and redirect to its output file."""
    params = {k: v for k, v in query_params(request).items() if k != "tasks"}
    task = {k: v for k, v in params.items() if k not in AUTH_KEYS}
    return await create_file(request, task, filename, params)


@router.post("/create_file")
@router.post("/create_file/{filename}")
async def create_file_post(request: Request, filename: str | None = None):
    """Create ``{"task": {...}}``, wait, and redirect to its output file."""
    body = await read_body(request)
    return await create_file(request, body.get("task"), filename, body)


@router.get("/file")
@router.get("/file/{filename}")
async def file_get(request: Request, filename: str | None = None):
    """Wait for the existing task ``?task=KEY`` and redirect to its output file."""
    params = dict(request.query_params)
    account = await request.app.state.accounts.authenticate(request, params)
    if not params.get("task"):
        raise bad_request("task", "task is missing", location="query")
    return await while_connected(request, wait_and_redirect(request, params["task"], account.name, filename))

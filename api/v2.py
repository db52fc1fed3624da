"""Stupeflix Tasks API v2 routes (seed 000): create and status."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from api.errors import bad_request
from api.keys import key_for
from api.tasks import check_definitions

router = APIRouter(prefix="/v2", tags=["v2"])
TRUE = {"1", "true", "yes", "on"}

async def read_body(request: Request) -> dict[str, Any]:
    """The JSON body whatever the Content-Type says (clients send text/plain or none)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("body", f"the request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        raise bad_request("body", "the request body must be a JSON object")
    return body

def as_bool(value: Any) -> bool:
    return value is True or str(value).lower() in TRUE

def status_keys(value: Any) -> list[str]:
    if value is None or value == []:
        raise bad_request("tasks", "tasks is missing")
    keys = value if isinstance(value, list) else [value]
    if not all(isinstance(k, str) for k in keys):
        raise bad_request("tasks", "tasks must be task keys (strings)")
    return keys

@router.post("/create")
async def create(request: Request) -> list[dict[str, Any]]:
    """Queue one or more tasks; answers their statuses in request order."""
    body = await read_body(request)
    account = await request.app.state.accounts.authenticate(request, body)
    definitions = check_definitions(body.get("tasks"))
    service = request.app.state.tasks
    run_ids = await service.create(definitions, account.name)

    return await service.statuses(
        [key_for(r) for r in run_ids], account.name, block=as_bool(body.get("block"))
    )

async def _status(request: Request, params: dict[str, Any]) -> list[dict[str, Any]]:
    account = await request.app.state.accounts.authenticate(request, params)
    return await request.app.state.tasks.statuses(
        status_keys(params.get("tasks")),
        account.name,
        details=as_bool(params.get("details")),
        block=as_bool(params.get("block")),
    )

@router.get("/status")
async def status_get(request: Request) -> list[dict[str, Any]]:
    """Statuses of ``?tasks=KEY&tasks=KEY`` (``block``, ``details``)."""
    query = request.query_params
    params: dict[str, Any] = {k: query.get(k) for k in ("block", "details")}
    params["tasks"] = query.getlist("tasks")
    return await _status(request, params)

@router.post("/status")
async def status_post(request: Request) -> list[dict[str, Any]]:
    """Same as GET /v2/status with the parameters in a JSON body."""
    return await _status(request, await read_body(request))

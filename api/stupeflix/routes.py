"""Task routes, served as ``/v1/...`` and ``/v2/...`` (seeds 001 and 000): create, status,
their streaming variants. The versions differ only in defaults and where errors go."""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Annotated, Any, Awaitable, Literal, TypeVar, Union

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema

from api.errors import bad_request
from api.stupeflix.tasks import check_definitions
from flows.contract.keys import key_for
from flows.registry import TASKS

TRUE = {"1", "true", "yes", "on"}
NDJSON = "application/x-ndjson"
SCHEMA_REF = "#/components/schemas/{model}"
CREATE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model="CreateRequest")}}},
}


@cache
def create_request_schemas() -> dict[str, Any]:
    """JSON schemas of the create request body (``CreateRequest``) and of each task's
    definition (one per registry entry, told apart by ``task_name``), for /docs."""
    definitions = tuple(
        create_model(
            "".join(part.capitalize() for part in name.split(".")) + "Task",  # image.thumb: ImageThumbTask
            __base__=spec.params,
            __doc__=spec.flow.description or spec.params.__doc__,
            task_name=(Literal[name], Field(description="The task to run.")),
        )
        for name, spec in TASKS.items()
    )
    Task = Annotated[Union[definitions], Field(discriminator="task_name")]

    class CreateRequest(BaseModel):
        """Tasks to queue, with the account's credentials (or an ``Authorization`` header)."""

        tasks: Task | list[Task] = Field(description="One task definition or a list of them.")
        secret: str | None = Field(None, description="The account's secret key.")
        api_key: str | None = Field(None, description="The account's api key (with a whitelisted Referer).")
        block: bool = Field(False, description="Answer once every task has ended.")

    _, schema = models_json_schema([(CreateRequest, "validation")], ref_template=SCHEMA_REF)
    return schema["$defs"]


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects in a request body (deeper ones fail to serialise
further down: pydantic's and Python's recursion limits)."""


def json_depth(value: Any) -> int:
    """How deeply ``value``'s lists and dicts nest (a scalar: 0), without recursion."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:  # no need to walk further than the limit
                level.extend((child, depth + 1) for child in children)
    return deepest


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON body whatever the Content-Type says (clients send text/plain or none)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("body", f"the request body is not valid JSON: {exc}")
    except RecursionError:  # far deeper than the limit
        body = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise bad_request("body", f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(body, dict):
        raise bad_request("body", "the request body must be a JSON object")
    return body


T = TypeVar("T")


async def _hung_up(request: Request) -> None:
    """Return once the client has closed its connection (the request body already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[T]) -> T | Response:
    """``work``'s answer, or, when the client hangs up first (its own timeout), ``work``
    cancelled: a blocking create or status read then leaves nothing waiting in the watcher
    (streams stop the same way: Starlette cancels them on disconnect). The empty answer
    returned then reaches no one."""
    answer = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, answer):
            task.cancel()  # nothing when it is done
        await asyncio.gather(gone, answer, return_exceptions=True)
    return Response(status_code=204) if answer.cancelled() else answer.result()


def query_params(request: Request) -> dict[str, Any]:
    """GET parameters; ``tasks`` may repeat."""
    params: dict[str, Any] = dict(request.query_params)
    params["tasks"] = request.query_params.getlist("tasks")
    return params


def as_bool(value: Any) -> bool:
    return value is True or str(value).lower() in TRUE


def status_keys(value: Any) -> list[str]:
    if value is None or value == []:
        raise bad_request("tasks", "tasks is missing")
    keys = value if isinstance(value, list) else [value]
    if not all(isinstance(k, str) for k in keys):
        raise bad_request("tasks", "tasks must be task keys (strings)")
    return keys


async def create_tasks(request: Request, body: dict[str, Any], version: str) -> tuple[list[str], str]:
    """Authenticate and queue the body's tasks; (keys in request order, account name)."""
    account = await request.app.state.accounts.authenticate(request, body)
    definitions = check_definitions(body.get("tasks"))
    run_ids = await request.app.state.tasks.create(
        definitions,
        account,
        version=version,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return [key_for(r) for r in run_ids], account.name


def tasks_router(version: str) -> APIRouter:
    """The task methods of one API version."""
    router = APIRouter(prefix=f"/{version}", tags=[version])

    @router.post("/create", openapi_extra={"requestBody": CREATE_BODY})
    async def create(request: Request) -> list[dict[str, Any]]:
        """Queue one or more tasks; their statuses in request order (``block``: when done)."""
        body = await read_body(request)
        keys, account = await create_tasks(request, body, version)
        block = as_bool(body.get("block"))
        answer = request.app.state.tasks.statuses(keys, account, version=version, block=block)
        return await (while_connected(request, answer) if block else answer)

    @router.post("/create_stream", openapi_extra={"requestBody": CREATE_BODY})
    async def create_stream(request: Request) -> StreamingResponse:
        """Queue tasks and stream their statuses as newline-delimited JSON."""
        body = await read_body(request)
        keys, account = await create_tasks(request, body, version)
        return StreamingResponse(request.app.state.tasks.stream(keys, account, version=version), media_type=NDJSON)

    async def status(request: Request, params: dict[str, Any]) -> list[dict[str, Any]]:
        account = await request.app.state.accounts.authenticate(request, params)
        block = as_bool(params.get("block"))
        answer = request.app.state.tasks.statuses(
            status_keys(params.get("tasks")), account.name, version=version,
            details=as_bool(params.get("details")), block=block,
        )
        return await (while_connected(request, answer) if block else answer)

    @router.get("/status")
    async def status_get(request: Request) -> list[dict[str, Any]]:
        """Statuses of ``?tasks=KEY&tasks=KEY`` (``block``, ``details``)."""
        return await status(request, query_params(request))

    @router.post("/status")
    async def status_post(request: Request) -> list[dict[str, Any]]:
        """Same as GET status with the parameters in a JSON body."""
        return await status(request, await read_body(request))

    async def stream(request: Request, params: dict[str, Any]) -> StreamingResponse:
        account = await request.app.state.accounts.authenticate(request, params)
        keys = status_keys(params.get("tasks"))
        return StreamingResponse(
            request.app.state.tasks.stream(keys, account.name, version=version), media_type=NDJSON
        )

    for path in ("/status_stream", "/stream"):

        @router.get(path)
        async def stream_get(request: Request) -> StreamingResponse:
            """Stream the statuses of ``?tasks=KEY&tasks=KEY`` until all have ended."""
            return await stream(request, query_params(request))

        @router.post(path)
        async def stream_post(request: Request) -> StreamingResponse:
            """Same as GET status_stream with the parameters in a JSON body."""
            return await stream(request, await read_body(request))

    return router

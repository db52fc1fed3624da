"""The FastAPI application: Stupeflix v1 and v2 routes, storage API, stored files, health,
and the VimQu surface under ``/api/`` (errors there use VimQu's ``{"message", "errors"}``
envelope; everywhere else the Stupeflix shape)."""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api import files, storage, vimqu
from api.auth import Accounts
from api.cors import AccountCORS
from api.errors import (
    ApiError, api_error_handler, error_body, http_error_handler, internal_error_handler, unavailable,
    validation_error_handler,
)
from api.routes import create_request_schemas, tasks_router
from api.tasks import TaskService
from api.vimqu import errors as vimqu_errors
from api.vimqu.errors import VimquError, is_vimqu, vimqu_error_handler
from api.vimqu.limits import Credits, RateLimiter
from api.watcher import RunWatcher
from blocks.meta import LOGO_PATH, logo_png
from blocks.storage import STORE_NAMES, load_store
from flows.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with get_client() as client:
        watcher = RunWatcher(client)
        app.state.client = client
        app.state.accounts = Accounts(client)
        app.state.tasks = TaskService(client, watcher)
        app.state.vimqu_limiter = RateLimiter()
        app.state.vimqu_credits = Credits(client)
        watcher.start()
        try:
            yield
        finally:
            await watcher.stop()


class CollapseSlashes:
    """Serve ``//v2/create`` and ``/v2//status`` as ``/v2/create`` and ``/v2/status``
    (real clients double a slash when they join a base URL and a path)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = {
                **scope,
                "path": re.sub("/{2,}", "/", scope["path"]),
                "raw_path": re.sub(b"/{2,}", b"/", scope.get("raw_path") or scope["path"].encode()),
            }
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes the limit."""


def body_too_large(scope: Scope, limit: int) -> Response:
    """413 in the surface's error shape."""
    description = f"the request body is over the limit of {limit} bytes"
    if is_vimqu(Request(scope)):
        return vimqu_errors.error_response(413, f"The request body is too large (more than {limit} bytes).",
                                           headers={"Connection": "close"})
    return error_body([{"name": "body", "location": "body", "description": description}], 413,
                      headers={"Connection": "close"})


class LimitBody:
    """Refuse request bodies over ``limit`` bytes (default: the setting
    ``api_max_body_bytes``) with 413, without reading them: at once when the
    Content-Length says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int | None = None):
        self.app, self.limit = app, limit or get_settings().api_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.strip().isdigit() and int(length) > self.limit:
            await body_too_large(scope, self.limit)(scope, receive, send)
            return
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:  # a streaming route already answered: nothing more can be said
                raise
            await body_too_large(scope, self.limit)(scope, receive, send)


class SeedErrorBodies:
    """The last guard of the error contract: an error response that is not JSON (Starlette's
    text/plain CORS refusal, ...) or is FastAPI's ``{"detail": ...}`` is answered in the
    surface's error shape instead (seed 000's ``{"status": "error", "errors": [...]}``;
    VimQu's ``{"message": ...}`` under ``/api/``), same status code and headers."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        body = bytearray()

        async def guarded_send(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # decided once the body is known (error bodies are small)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                await self._answer(scope, held, bytes(body), send)

        await self.app(scope, receive, guarded_send)

    @staticmethod
    def _problem(headers: dict[bytes, bytes], body: bytes) -> str | None:
        """What is wrong with an error body as the client would see it; None when it is fine."""
        if headers.get(b"content-type", b"").split(b";")[0].strip() == b"application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                return body.decode(errors="replace")
            if isinstance(parsed, dict) and "detail" in parsed:
                detail = parsed["detail"]
                return detail if isinstance(detail, str) else json.dumps(detail)
            return None
        return body.decode(errors="replace").strip()

    async def _answer(self, scope: Scope, start: dict, body: bytes, send: Send) -> None:
        headers = dict(start.get("headers") or [])
        problem = self._problem(headers, body)
        if problem is None:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        status = start["status"]
        description = problem[:500] or HTTPStatus(status).phrase
        kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers") or []
                if k.lower() not in (b"content-type", b"content-length")}
        if is_vimqu(Request(scope)):
            response = vimqu_errors.error_response(status, description, headers=kept)
        else:
            preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in dict(scope["headers"])
            name, location = ("origin", "header") if preflight else ("request", "request")
            response = error_body([{"name": name, "location": location, "description": description}], status, kept)
        await response(scope, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.disconnect"}


async def prefect_down_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
        raise exc
    if is_vimqu(request):
        return vimqu_errors.unavailable(type(exc).__name__)
    return await api_error_handler(request, unavailable(f"{type(exc).__name__}: {exc}"))


async def routing_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if is_vimqu(request):
        return vimqu_errors.http_error(request, exc)
    return await http_error_handler(request, exc)


async def request_validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    if is_vimqu(request):
        return vimqu_errors.validation_error(request, exc)
    return await validation_error_handler(request, exc)


async def server_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if is_vimqu(request):
        return vimqu_errors.internal_error(request, exc)
    return await internal_error_handler(request, exc)


def create_app() -> FastAPI:
    app = FastAPI(
        title="dragonflow",
        description="The Stupeflix dragon Tasks API (/v1, /v2) and the VimQu task API (/api) on Prefect 3.",
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(VimquError, vimqu_error_handler)
    app.add_exception_handler(StarletteHTTPException, routing_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(Exception, server_error_handler)
    for exc_type in (httpx.TransportError, PrefectHTTPStatusError):
        app.add_exception_handler(exc_type, prefect_down_handler)
    for version in ("v1", "v2"):
        app.include_router(tasks_router(version))
    app.include_router(files.router)
    app.include_router(storage.router)
    app.include_router(vimqu.router)
    app.add_middleware(AccountCORS, accounts=lambda: getattr(app.state, "accounts", None))
    app.add_middleware(LimitBody)
    app.add_middleware(SeedErrorBodies)
    app.add_middleware(CollapseSlashes)  # outermost: the others see the collapsed path
    openapi = app.openapi

    def openapi_with_task_schemas() -> dict[str, Any]:
        """The OpenAPI document, with the create request's schema per task (registry)."""
        if app.openapi_schema is None:
            openapi().setdefault("components", {}).setdefault("schemas", {}).update(create_request_schemas())
        return app.openapi_schema

    app.openapi = openapi_with_task_schemas

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """200 when the API, the Prefect server and at least one worker are ready."""
        client = request.app.state.client
        report: dict[str, Any] = {"api": "ok"}
        problem = await client.api_healthcheck()
        report["prefect"] = "ok" if problem is None else f"unreachable: {problem}"
        workers = []
        if problem is None:
            workers = [
                w.name
                for w in await client.read_workers_for_work_pool(get_settings().work_pool)
                if str(w.status.value if hasattr(w.status, "value") else w.status).upper() == "ONLINE"
            ]
        report["workers"] = workers
        healthy = problem is None and bool(workers)
        return JSONResponse(report, status_code=200 if healthy else 503)

    @app.get(LOGO_PATH, include_in_schema=False)
    async def block_logo() -> Response:
        """The logo the Prefect UI shows for dragonflow blocks."""
        return Response(logo_png(), media_type="image/png")

    @app.get("/storage/{store}/{path:path}", include_in_schema=False)
    async def stored_file(store: str, path: str) -> FileResponse:
        """Output files of the local storage systems."""
        if store not in STORE_NAMES:
            raise HTTPException(404, "no such storage system")
        block = await load_store(store)
        target = block.object_path(path)
        if not block.is_local or not block.fs.isfile(target):
            raise HTTPException(404, "no such file")
        return FileResponse(target)

    return app


app = create_app()

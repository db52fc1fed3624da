"""The FastAPI application: Stupeflix v1 and v2 routes, storage API, stored files, health,
and the VimQu surface under ``/api/`` (errors there use VimQu's ``{"message", "errors"}``
envelope; everywhere else the Stupeflix shape)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import vimqu
from api.stupeflix import files, storage
from api.auth import Accounts
from api.cors import AccountCORS
from api.errors import (
    ApiError, api_error_handler, http_error_handler, internal_error_handler, unavailable, validation_error_handler,
)
from api.guards import CollapseSlashes, LimitBody, SeedErrorBodies
from api.stupeflix.routes import create_request_schemas, tasks_router
from api.stupeflix.tasks import TaskService
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
            await app.state.tasks.create_lock.aclose()


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

"""Errors on the wire: every error answers seed 000's body
``{"status": "error", "errors": [{name, location, description}]}`` (400/401, 404/405 from
routing, 503 when Prefect is down)."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class ApiError(Exception):
    """A request the API refuses: ``{"status": "error", "errors": [{name, location, description}]}``."""

    def __init__(self, status_code: int, name: str, location: str, description: str):
        super().__init__(description)
        self.status_code = status_code
        self.errors = [{"name": name, "location": location, "description": description}]


def bad_request(name: str, description: str, location: str = "body") -> ApiError:
    return ApiError(400, name, location, description)


def unauthorized(description: str = "invalid credentials") -> ApiError:
    return ApiError(401, "secret", "header", description)


def unavailable(reason: str) -> ApiError:
    return ApiError(503, "prefect", "server", f"the task system is temporarily down, retry later ({reason})")


def error_body(errors: list[dict[str, str]], status_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": "error", "errors": errors}, status_code=status_code, headers=headers)


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return error_body(exc.errors, exc.status_code)


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    """Routing and framework errors (unknown route 404, wrong method 405, ...)."""
    name, location = ("method", "method") if exc.status_code == 405 else ("path", "path")
    return error_body([{"name": name, "location": location, "description": str(exc.detail)}],
                      exc.status_code, exc.headers)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's request validation, answered as the seed's 400."""
    errors = [
        {
            "name": ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0]),
            "location": str(error["loc"][0]),
            "description": error["msg"],
        }
        for error in exc.errors()
    ]
    return error_body(errors, 400)


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception (the server logs its traceback)."""
    return error_body([{"name": "server", "location": "server", "description": "internal error"}], 500)

"""Errors on the wire: 400/401 bodies as seed 000 shows, 503 when Prefect is down."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse


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


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"status": "error", "errors": exc.errors}, status_code=exc.status_code)

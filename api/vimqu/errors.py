"""Errors of the VimQu surface (seed 003): every error under ``/api/`` answers
``{"message": ..., "errors": {field: [messages]}}`` (``errors`` only when fields are at
fault) with the seed's codes: 400 unreadable body, 401 bad or missing token, 402 no credits,
403 suspended account, 404 unknown route or object (another account's too), 422 incorrect
values, 429 too many requests (with ``Retry-After``), 500, 503 when Prefect is down."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PREFIX = "/api/"
MASK = "****"


def scrub(text: str, storage: Any) -> str:
    """``text`` (a backend's error) with every secret value of ``storage`` masked."""
    from pydantic import SecretStr

    for name in type(storage).model_fields:
        value = getattr(storage, name, None)
        secret = value.get_secret_value() if isinstance(value, SecretStr) else None
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


def is_vimqu(request: Request) -> bool:
    """True for requests of the VimQu surface (paths under ``/api/``)."""
    return request.url.path.startswith(PREFIX) or request.url.path == PREFIX.rstrip("/")


class VimquError(Exception):
    """A request the VimQu API refuses."""

    def __init__(self, status_code: int, message: str, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code, self.message, self.errors, self.headers = status_code, message, errors, headers

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.message, self.errors, self.headers)


def error_response(status_code: int, message: str, errors: dict[str, list[str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict = {"message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status_code, headers=headers)


def bad_request(message: str) -> VimquError:
    return VimquError(400, message)


def unauthenticated(message: str = "Unauthenticated: the Bearer token is invalid.") -> VimquError:
    return VimquError(401, message, headers={"WWW-Authenticate": "Bearer"})


def payment_required(message: str) -> VimquError:
    return VimquError(402, message)


def forbidden(message: str) -> VimquError:
    return VimquError(403, message)


def not_found(what: str, ident: object) -> VimquError:
    return VimquError(404, f"{what} {ident} not found")


def invalid(errors: dict[str, list[str]], message: str | None = None) -> VimquError:
    """422 naming each field at fault."""
    first = next(iter(errors.items()), ("body", ["is invalid"]))
    return VimquError(422, message or f"The given data was invalid: {first[0]} {first[1][0]}", errors)


def too_many(retry_after: int, limit: int) -> VimquError:
    return VimquError(429, f"Too Many Requests: more than {limit} requests per minute",
                      headers={"Retry-After": str(retry_after)})


async def vimqu_error_handler(request: Request, exc: VimquError) -> JSONResponse:
    return exc.response()


def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Routing errors under /api/ (unknown endpoint 404, wrong method 405)."""
    message = "Endpoint not found" if exc.status_code == 404 and exc.detail == "Not Found" else str(exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation (path and query parameters) as a 422 naming each field."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0])
        errors.setdefault(name, []).append(error["msg"])
    return invalid(errors).response()


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "Internal Server Error")


def unavailable(reason: str) -> JSONResponse:
    return error_response(503, f"The task system is temporarily down, retry later ({reason})")

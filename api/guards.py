"""ASGI middlewares that guard the wire contract before and after the routes: doubled
slashes collapsed, request bodies capped (413 unread), and every error answered in the
surface's error shape."""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body
from api.vimqu import errors as vimqu_errors
from api.vimqu.errors import is_vimqu
from flows.settings import get_settings


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

"""The embedded Prefect server: Prefect's own server app, run by uvicorn, with one
addition for SQLite.

SQLite lets one writer in at a time; Prefect's server answers a write that lost the
race with a retryable 503, and Prefect's client then waits 2, 4, 8 s. The answers get a
short ``Retry-After`` so the client tries again after ``RETRY_AFTER`` seconds instead,
which keeps a busy SQLite server at sub-second latency.

Run: ``python -m deployments.prefect_server --host 127.0.0.1 --port 4200``.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER = b"0.1"


class RetryAfterOn503:
    """ASGI middleware: add ``Retry-After`` to 503 answers that lack one."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"retry-after", RETRY_AFTER)]}
            await send(message)

        await self.app(scope, receive, send_with_retry_after)


def create_app() -> ASGIApp:
    """Prefect's server (API, UI and services) behind the Retry-After middleware."""
    from prefect.server.api.server import create_app as prefect_create_app

    return RetryAfterOn503(prefect_create_app(final=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", timeout_keep_alive=5)


if __name__ == "__main__":
    main()

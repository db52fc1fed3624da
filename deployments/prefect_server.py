"""The embedded Prefect server: Prefect's own server app, run by uvicorn, with two
additions for SQLite.

SQLite lets one writer in at a time. Prefect opens its write transactions DEFERRED: they
read first and take the write lock at their first write, which SQLite refuses at once
("database is locked") when another writer committed in between. Under a busy worker that
refused nearly every bulk create and most single ones. ``immediate_sqlite_writes`` makes
them BEGIN IMMEDIATE (as Prefect does for its SELECT ... FOR UPDATE transactions): a write
transaction takes the lock first and waits its turn (SQLite's busy timeout) instead of
failing.

Prefect's server rolls back a write that still lost a race and answers it with a
retryable 503, which Prefect's client would retry after a round trip and a wait.
``ReplayOn503`` retries such requests inside the server instead, a few milliseconds later
and one at a time, so clients normally never see these 503s; only a request still losing
after ``BUDGET`` seconds gets its 503, with a short ``Retry-After`` so that the client
comes back soon.

The SQLite patch, the warm worker and the shared suspension observer reach into Prefect's
private internals: ``require_prefect`` refuses to apply them to any Prefect but
``PREFECT_PIN``.

Opt-in access log, for the benchmarks: with ``DRAGONFLOW_PREFECT_ACCESS_LOG=<file>`` set,
``AccessLog`` appends one tab-separated line per HTTP request to that file (start as epoch
seconds, duration in seconds, method, path, status, client port); several server processes
may share the file. Off by default.

Run: ``python -m deployments.prefect_server --host 127.0.0.1 --port 4200``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import prefect
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.settings import get_settings

PREFECT_PIN = "3.8.8"  # the Prefect whose private internals the patches here were written for

RETRY_AFTER = b"0.1"
# Prefect's answer to a retryable database error (``custom_internal_exception_handler``).
RETRYABLE_BODY = b'{"exception_message":"Service Unavailable"}'
MAX_REPLAY_BODY = 1 << 20
FIRST_DELAY, MAX_DELAY = 0.005, 0.1
# Waiting for its turn counts: a SQLite write takes 25-100 ms here, so 40 colliding
# writes need ~4 s one after the other.
BUDGET = 10.0
ACCESS_LOG = "DRAGONFLOW_PREFECT_ACCESS_LOG"  # environment variable: the access log's file


class ReplayOn503:
    """ASGI middleware: replay requests that Prefect answered with its retryable database
    error 503.

    That answer means the request's transaction was rolled back, so calling the app again
    with the same request is what Prefect's client does anyway, minus a round trip and its
    wait. Replays take turns (a lane): concurrent replays would mostly make each other lose
    again, while one at a time they run at SQLite's serial pace. The request body is
    buffered to be replayed (bodies over ``MAX_REPLAY_BODY`` are not replayed); only a
    503's start and small body are held back, every other answer streams untouched.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self._lane = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request, replayable = await _read_request(receive)
        deadline = time.monotonic() + (BUDGET if replayable else 0)
        if not await self._attempt(scope, _replay(request, receive), send, deadline):
            return
        delay = FIRST_DELAY
        async with self._lane:
            while await self._attempt(scope, _replay(request, receive), send, deadline):
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(2 * delay, MAX_DELAY)

    async def _attempt(self, scope: Scope, receive: Receive, send: Send, deadline: float) -> bool:
        """Call the app once; True when its answer was a retryable 503 that was dropped."""
        held: list[Message] = []
        dropped = False

        async def hold_503(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start" and message["status"] == 503:
                message = _with_retry_after(message)
                if time.monotonic() < deadline:
                    held.append(message)  # until its body tells whether it is Prefect's
                    return
            elif held:
                held.append(message)
                body, more = b"".join(m.get("body", b"") for m in held[1:]), message.get("more_body", False)
                if body == RETRYABLE_BODY and not more:
                    dropped = True
                    return
                if more and RETRYABLE_BODY.startswith(body):
                    return
                *earlier, message = held
                held.clear()
                for early in earlier:
                    await send(early)
            await send(message)

        try:
            await self.app(_fresh(scope), receive, hold_503)
        except Exception:
            # Starlette re-raises the database error after sending the 503 (for the server's log).
            if not dropped:
                raise
        return dropped


class AccessLog:
    """ASGI middleware: append one line per HTTP request to ``path`` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, path: str):
        self.app = app
        self.out = open(path, "a", buffering=1)  # one write per line: lines of several processes stay whole

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.time(), 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            fields = (f"{start:.6f}", f"{time.time() - start:.6f}", scope["method"], scope["path"], status,
                      (scope.get("client") or ("", 0))[1])
            self.out.write("\t".join(map(str, fields)) + "\n")


def _fresh(scope: Scope) -> Scope:
    """A copy of ``scope`` for one attempt: routing writes into it (``root_path`` under a
    mount, ``endpoint``...) and ``request.state`` into its ``state``."""
    fresh = dict(scope)
    if "state" in scope:
        fresh["state"] = dict(scope["state"])
    return fresh


async def _read_request(receive: Receive) -> tuple[list[Message], bool]:
    """The request's messages up to the end of its body, or as far as ``MAX_REPLAY_BODY``
    (then the rest is left to read); True when the whole body was read within the cap."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        size += len(message.get("body", b""))
        if size > MAX_REPLAY_BODY:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` giving ``messages`` again, then whatever the client sends next."""
    pending = iter(messages)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay


def _with_retry_after(start: Message) -> Message:
    headers = list(start.get("headers", []))
    if any(name.lower() == b"retry-after" for name, _ in headers):
        return start
    return {**start, "headers": [*headers, (b"retry-after", RETRY_AFTER)]}


def require_prefect(patch: str) -> None:
    """RuntimeError unless the installed Prefect is ``PREFECT_PIN`` (``patch`` says what
    relies on its private internals)."""
    if prefect.__version__ != PREFECT_PIN:
        raise RuntimeError(
            f"{patch} patches private internals of Prefect {PREFECT_PIN}, but Prefect"
            f" {prefect.__version__} is installed: pin prefect=={PREFECT_PIN} or port the patch"
        )


def immediate_sqlite_writes() -> None:
    """Make every write transaction of Prefect's SQLite database BEGIN IMMEDIATE (reads
    outside transactions are unchanged)."""
    require_prefect("immediate_sqlite_writes (AioSqliteConfiguration.begin_transaction)")
    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
        token = SQLITE_BEGIN_MODE.set("IMMEDIATE")
        try:
            async with session.begin() as transaction:
                yield transaction
        finally:
            SQLITE_BEGIN_MODE.reset(token)

    AioSqliteConfiguration.begin_transaction = begin_transaction


def create_app() -> ASGIApp:
    """Prefect's server (API, UI and services) with immediate SQLite write transactions,
    behind the replaying middleware (and the access log when ``ACCESS_LOG`` names a file)."""
    from prefect.server.api.server import create_app as prefect_create_app

    immediate_sqlite_writes()
    app = ReplayOn503(prefect_create_app(final=True))
    access_log = os.environ.get(ACCESS_LOG)
    return AccessLog(app, access_log) if access_log else app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=get_settings().prefect_port)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", timeout_keep_alive=5)


if __name__ == "__main__":
    main()

"""What the video-service uploaders (YouTube, Vimeo, Facebook) share: the error they raise,
their retry policy (backoff), progress callbacks and reading a byte range of a file in
pieces (an upload streams from the file; at most one piece is in memory)."""

from __future__ import annotations

import asyncio
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field

Progress = Callable[[int, int], Any]
"""``progress(bytes_confirmed, total)``; may return an awaitable."""
PIECE = 256 * 1024


class ServiceCredentials(CredentialsBlock):
    """Credentials of a video service that tasks may name (``"credentials": NAME``)."""

    accounts: list[str] = Field(
        default_factory=list, description="Accounts whose tasks may name this block; empty: every account."
    )

    def usable_by(self, account: str) -> bool:
        """True when tasks of ``account`` may use these credentials."""
        return not self.accounts or account in self.accounts


class UploadError(Exception):
    """An upload failed; the message is safe to show a client (it never holds a token).

    ``transient`` errors (5xx, 429, a dropped connection) are worth a new try; the others
    (a refused token, a quota, a bad request) are not.
    """

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry an upload task only for a transient UploadError."""
    try:
        error = state.data
    except Exception:  # noqa: BLE001 - a state without data
        return False
    return isinstance(error, UploadError) and error.transient


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon one upload request is tried again (resuming)."""

    retries: int = 5
    delay: float = 1.0
    timeout: float = 300.0

    def delays(self) -> list[float]:
        return [self.delay * 2**n for n in range(self.retries)]


async def report(progress: Progress | None, done: int, total: int) -> None:
    if progress is None:
        return
    result = progress(done, total)
    if inspect.isawaitable(result):
        await result


def transport_message(exc: BaseException) -> str:
    """A short description of a transport failure, without the URL (its query may hold a key)."""
    return f"{type(exc).__name__}" + (f": {exc}" if isinstance(exc, (TimeoutError, OSError)) else "")


async def read_range(path: Path, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (exclusive) of ``path`` (one chunk), read in a thread."""

    def _read() -> bytes:
        with open(path, "rb") as source:
            source.seek(start)
            return source.read(end - start)

    return await asyncio.to_thread(_read)


async def stream_range(path: Path, start: int, end: int, piece: int = PIECE) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` of ``path`` as pieces read off the event loop."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        position = start
        while position < end:
            data = await asyncio.to_thread(handle.read, min(piece, end - position))
            if not data:
                break
            position += len(data)
            yield data
    finally:
        await asyncio.to_thread(handle.close)


def file_size(path: Path) -> int:
    return os.path.getsize(path)


TRANSPORT_ERRORS = (httpx.TransportError, OSError)
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

"""Where inputs come from: the sources ``fetch`` tries in order (thumbor's chained loaders).

A ``Source`` answers ``matches(url)`` and copies a matching URL into a local file; the
first that matches serves the URL. ``SOURCES`` is the chain:

1. ``OwnStoreSource``: an output URL of our own storage blocks, read straight from the
   storage (one task's output feeds the next without an HTTP round trip);
2. ``RegisteredStorageSource``: ``storage://ID/path`` read from registered storage ``ID``
   (VimQu's storages). Its ``lookup`` finds no storage until the VimQu surface provides
   one, so such URLs are refused like any other unknown scheme;
3. ``HttpSource``: http(s), resolved once, refused for private/loopback/link-local
   addresses unless allowed, redirects re-checked, size-capped.

Every failure is a ``FetchError`` with a ``code`` (see ``flows.errors``).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Awaitable, Callable, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import fsspec
import httpx

from blocks import storage
from blocks.registered import RegisteredStorage, StorageUnavailable, lookup_registered
from flows.contract.net import REDIRECTS, check_url_allowed, is_http, send_pinned, tls_context
from flows.errors import FetchError
from flows.run_scope import current_run
from flows.settings import Settings

_CHUNK = 64 * 1024
_WRITE_BATCH = 1024 * 1024  # bytes gathered before one write in a thread


class Source(Protocol):
    """One kind of input location."""

    name: str

    async def matches(self, url: str) -> bool:
        """True when this source serves ``url``."""

    async def copy(self, url: str, target: Path, settings: Settings) -> None:
        """Write ``url``'s content to ``target``; FetchError on failure."""


async def _copy_file(url: str, fs: fsspec.AbstractFileSystem, path: str, target: Path) -> None:
    """Copy ``path`` on ``fs`` to ``target`` in a thread."""

    def _copy() -> None:
        with fs.open(path, "rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)

    try:
        await asyncio.to_thread(_copy)
    except FileNotFoundError:
        raise FetchError(url, "stored file not found", "not_found") from None
    except OSError as exc:
        raise FetchError(url, f"stored file unreadable: {exc}", "upstream", transient=True) from None


class OwnStoreSource:
    """Output URLs of our own storage blocks, read from storage."""

    name = "own store"

    async def matches(self, url: str) -> bool:
        return await storage.open_stored(url) is not None

    async def copy(self, url: str, target: Path, settings: Settings) -> None:
        fs, path = await storage.open_stored(url)
        await _copy_file(url, fs, path, target)


async def registered_of_the_run(storage_id: str) -> RegisteredStorage | None:
    """The default lookup: a storage registered by the running task's account (another
    account's id, or no task running, finds nothing)."""
    try:
        account = current_run().account
    except LookupError:
        return None
    return await lookup_registered(storage_id, account)


class RegisteredStorageSource:
    """``storage://ID/path``: ``path`` under registered storage ``ID`` (found by ``lookup``),
    read through the storage's own backend."""

    name = "registered storage"

    def __init__(self, lookup: Callable[[str], Awaitable[RegisteredStorage | None]] = registered_of_the_run):
        self.lookup = lookup

    async def _block(self, url: str) -> RegisteredStorage | None:
        parts = urlsplit(url)
        return await self.lookup(parts.netloc) if parts.scheme == "storage" and parts.netloc else None

    async def matches(self, url: str) -> bool:
        return await self._block(url) is not None

    async def copy(self, url: str, target: Path, settings: Settings) -> None:
        block = await self._block(url)
        try:
            await block.get(unquote(urlsplit(url).path), target)
        except FileNotFoundError:
            raise FetchError(url, "stored file not found", "not_found") from None
        except StorageUnavailable as exc:
            raise FetchError(url, str(exc), "upstream", transient=exc.transient) from None


def _status_error(url: str, where: str, response: httpx.Response) -> FetchError:
    """404/410 -> not_found; 408, 429 and 5xx -> transient upstream; others -> upstream."""
    status = response.status_code
    reason = where + f"HTTP {status} {response.reason_phrase}"
    if status in (404, 410):
        return FetchError(url, reason, "not_found")
    return FetchError(url, reason, "upstream", transient=status >= 500 or status in (408, 429))


async def _write_body(url: str, response: httpx.Response, target: Path, limit: int) -> None:
    """Stream the body into ``target``, writing in batches off the event loop; a body
    compressed although we asked for ``identity`` is decoded, and ``limit`` counts what
    is written."""
    received = 0
    batch = bytearray()
    with target.open("wb") as out:
        async for chunk in response.aiter_bytes(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise FetchError(url, f"too large: more than limit of {limit} bytes", "too_large")
            batch += chunk
            if len(batch) >= _WRITE_BATCH:
                await asyncio.to_thread(out.write, bytes(batch))
                batch.clear()
        await asyncio.to_thread(out.write, bytes(batch))


class HttpSource:
    """http(s) URLs on public addresses (or allowed by ``DRAGONFLOW_FETCH_ALLOW``)."""

    name = "http"

    async def matches(self, url: str) -> bool:
        return is_http(url)

    async def copy(self, url: str, target: Path, settings: Settings) -> None:
        limit = settings.fetch_max_bytes
        timeout = httpx.Timeout(settings.fetch_timeout, connect=min(settings.fetch_timeout, 30.0))
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout,
                                     verify=tls_context()) as client:
            current = url
            for _ in range(settings.fetch_max_redirects + 1):
                where = "" if current == url else f"redirected to {current}: "
                try:
                    addresses = await check_url_allowed(current, settings)
                except FetchError as exc:
                    raise FetchError(url, where + exc.reason, exc.code) from None
                response = await send_pinned(client, current, addresses)
                try:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code >= 300:
                        raise _status_error(url, where, response)
                    length = response.headers.get("content-length", "")
                    if length.isdigit() and int(length) > limit:
                        raise FetchError(url, f"too large: {length} bytes > limit of {limit} bytes", "too_large")
                    return await _write_body(url, response, target, limit)
                finally:
                    await response.aclose()
            raise FetchError(url, f"too many redirects (more than {settings.fetch_max_redirects})", "upstream",
                             transient=False)


SOURCES: list[Source] = [OwnStoreSource(), RegisteredStorageSource(), HttpSource()]

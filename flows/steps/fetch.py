"""``fetch``: copy a task's input URL into the run's scratch directory.

The URL is served by the first source of ``flows.steps.sources.SOURCES`` that matches it
(own store, registered storage, http). ``fetch`` is a step (a Prefect task run named
``fetch photo.jpg``, retried with exponential backoff for transient errors only: 5xx,
429, a dropped connection, a timeout). Outside a flow, call the plain coroutine
``fetch.fn(url, dest_dir)``.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from flows.errors import FetchError
from flows.settings import Settings, get_settings
from flows.steps.sources import SOURCES, Source
from flows.steps.step import step, step_log



def url_file_name(url: str) -> str:
    """A safe file name from the URL's path (``input`` when it has none)."""
    name = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "input"


def _claim_path(url: str, dest_dir: Path) -> Path:
    """Create and return a new empty file in ``dest_dir`` named after the URL path."""
    name = url_file_name(url)
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    stem, ext = stem[:100] or "input", ext[:16]
    for n in range(10_000):
        candidate = dest_dir / f"{stem}{'-%d' % n if n else ''}{dot}{ext}"
        try:
            candidate.open("xb").close()
            return candidate
        except FileExistsError:
            continue
    raise FetchError(url, f"too many files named {name} in {dest_dir}", "bad_request")


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a fetch only for a transient FetchError."""
    return isinstance(state.data, FetchError) and state.data.transient


async def _source_for(url: str) -> Source:
    """The first source of the chain that serves ``url``."""
    try:
        for source in SOURCES:
            if await source.matches(url):
                return source
    except ValueError as exc:  # a malformed URL (bad port, bracket, ...)
        raise FetchError(url, f"invalid URL: {exc}", "bad_request") from None
    raise FetchError(url, "only http and https URLs are accepted", "bad_request")


def _run_name(parameters: dict[str, Any]) -> str:
    return f"fetch {url_file_name(parameters['url'])}"


_settings = get_settings()


@step(
    "fetch",
    run_name=_run_name,
    retries=_settings.fetch_retries,
    retry_delay_seconds=[_settings.fetch_retry_delay * 2**n for n in range(_settings.fetch_retries)],
    retry_condition_fn=is_transient,
)
async def fetch(url: str, dest_dir: Path, *, settings: Settings | None = None) -> Path:
    """Copy ``url`` into ``dest_dir`` (created) and return the new file's path.

    Raises FetchError for any failure; no partial file is left behind.
    """
    settings = settings or get_settings()
    start = time.monotonic()
    source = await _source_for(url)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = _claim_path(url, dest_dir)
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            await source.copy(url, target, settings)
    except BaseException as exc:
        received = target.stat().st_size if target.exists() else 0
        target.unlink(missing_ok=True)
        if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
            raise FetchError(url, f"timed out after {settings.fetch_timeout:g} s ({received} bytes written;"
                                  " the limit is DRAGONFLOW_FETCH_TIMEOUT)", "timeout") from None
        if isinstance(exc, httpx.InvalidURL):
            raise FetchError(url, f"invalid URL: {exc}", "bad_request") from None
        if isinstance(exc, (httpx.HTTPError, OSError)):
            raise FetchError(url, f"download failed: {type(exc).__name__}: {exc}", "upstream",
                             transient=True) from None
        raise
    step_log("fetched %s: %d bytes in %.2f s from %s", url, target.stat().st_size,
             time.monotonic() - start, source.name)
    return target

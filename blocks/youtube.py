"""YouTube: the credentials block (a client factory) and the resumable upload task.

The upload is the YouTube Data API v3 resumable protocol: ``POST
upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`` with the metadata and
``X-Upload-Content-Length``/``-Type`` answers a session URI; the file goes in ``PUT``\\ s of
multiples of 256 KiB with ``Content-Range``, each answered ``308`` and the ``Range``
stored so far. After a dropped connection, a 5xx or a 429, the status query (``PUT`` with
``Content-Range: bytes */TOTAL``) says what the server has and the upload resumes there,
after a backoff (a ``308`` without ``Range``: nothing stored, start again at 0).
401 means the token is invalid or expired; quota errors (403 ``quotaExceeded``, 400
``uploadLimitExceeded``) are reported at once, never retried.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, Literal

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, SecretStr

from .meta import DOCUMENTATION_URL, LOGO_URL
from .uploads import (
    RETRY_STATUS, TRANSPORT_ERRORS, Progress, RetryPolicy, ServiceCredentials, UploadError, file_size, report,
    stream_range,
    transport_message,
)

API_URL = "https://www.googleapis.com"
WATCH_URL = "https://www.youtube.com/watch?v="
UPLOAD_PATH = "/upload/youtube/v3/videos"
GRANULE = 256 * 1024  # chunks are multiples of 256 KiB (but the last)
API_KEY = re.compile(r"AIza[0-9A-Za-z_-]{35}")
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"}
RETRY_REASONS = {"backendError", "internalError", "rateLimitExceeded", "userRateLimitExceeded"}


class YouTubeCredentials(ServiceCredentials):
    """An OAuth2 access token allowed to upload to a YouTube channel."""

    _block_type_name = "Dragonflow YouTube Credentials"
    _block_type_slug = "dragonflow-youtube-credentials"
    _description = "OAuth2 access token (youtube.upload scope) and API key of a YouTube channel, for video uploads."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.youtube import YouTubeCredentials

    youtube_credentials = YouTubeCredentials.load("BLOCK_NAME")
    client = youtube_credentials.get_client()  # an httpx.AsyncClient with the bearer token
    ```
    """

    access_token: SecretStr = Field(description="OAuth2 access token with the youtube.upload scope.")
    developer_key: SecretStr | None = Field(None, description="API key of the Google Cloud project (AIza...), if any.")

    def api_key(self) -> str | None:
        """The developer key when it is a Google API key (old GData keys are not)."""
        key = self.developer_key.get_secret_value() if self.developer_key else ""
        return key if API_KEY.fullmatch(key) else None

    def get_client(self, api_url: str = API_URL, timeout: float = 300.0) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on the API that sends the bearer token."""
        return httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {self.access_token.get_secret_value()}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            trust_env=False,
        )


class YouTubeVideo(BaseModel):
    """The metadata of an uploaded video."""

    title: str = Field("", description="Video title.")
    description: str = Field("", description="Video description.")
    tags: list[str] = Field(default_factory=list, description="Video tags.")
    category_id: int = Field(22, description="Category id (22: People & Blogs).")
    privacy_status: Literal["public", "private", "unlisted"] = Field("public", description="Privacy status.")

    def resource(self) -> dict[str, Any]:
        snippet: dict[str, Any] = {"title": self.title or "Untitled", "description": self.description,
                                   "categoryId": str(self.category_id)}
        if self.tags:
            snippet["tags"] = self.tags
        return {"snippet": snippet, "status": {"privacyStatus": self.privacy_status}}


def _reason(response: httpx.Response) -> tuple[str, str]:
    """(reason, message) of a Google API error body."""
    try:
        error = response.json().get("error") or {}
    except (json.JSONDecodeError, AttributeError, ValueError):
        return "", response.text[:200]
    errors = error.get("errors") or [{}]
    return str(errors[0].get("reason") or error.get("status") or ""), str(error.get("message") or "")


def _error(response: httpx.Response, when: str) -> UploadError:
    status = response.status_code
    reason, message = _reason(response)
    detail = f" ({reason}{': ' + message if message else ''})" if reason or message else ""
    if status == 401:
        return UploadError(f"YouTube refused the access token: it is invalid or expired (HTTP 401){detail}",
                           status=status)
    if reason in QUOTA_REASONS:
        return UploadError(f"YouTube quota exceeded while {when} (HTTP {status}){detail}; not retried",
                           status=status)
    transient = status in RETRY_STATUS or reason in RETRY_REASONS
    return UploadError(f"YouTube answered HTTP {status} while {when}{detail}", transient=transient, status=status)


def _stored(response: httpx.Response) -> int:
    """Bytes the server has, from a 308's ``Range: bytes=0-N`` (none: 0)."""
    match = re.fullmatch(r"bytes=0-(\d+)", response.headers.get("range", "").strip())
    return int(match.group(1)) + 1 if match else 0


def _video_id(response: httpx.Response) -> str:
    try:
        return str(response.json()["id"])
    except (ValueError, KeyError, TypeError):
        raise UploadError("YouTube finished the upload but answered no video id") from None


async def start_session(client: httpx.AsyncClient, credentials: YouTubeCredentials, video: YouTubeVideo,
                        size: int, content_type: str) -> str:
    """The session URI of a new resumable upload."""
    params = {"uploadType": "resumable", "part": "snippet,status"}
    if key := credentials.api_key():
        params["key"] = key
    try:
        response = await client.post(UPLOAD_PATH, params=params, json=video.resource(), headers={
            "X-Upload-Content-Length": str(size), "X-Upload-Content-Type": content_type})
    except TRANSPORT_ERRORS as exc:
        raise UploadError(f"YouTube upload could not start: {transport_message(exc)}", transient=True) from None
    if response.status_code != 200 or "location" not in response.headers:
        raise _error(response, "starting the upload")
    return response.headers["location"]


async def send_file(client: httpx.AsyncClient, session: str, path: Path, size: int, *, chunk_bytes: int,
                    policy: RetryPolicy, progress: Progress | None = None) -> str:
    """Send ``path`` to the upload ``session`` in chunks, resuming after failures; the video id."""
    chunk = max(GRANULE, chunk_bytes // GRANULE * GRANULE)
    offset, failures, ask_status = 0, 0, False
    while True:
        try:
            if ask_status:
                response = await client.put(session, headers={"Content-Range": f"bytes */{size}"}, content=b"")
            else:
                end = min(offset + chunk, size)
                response = await client.put(
                    session, content=stream_range(path, offset, end),
                    headers={"Content-Length": str(end - offset),
                             "Content-Range": f"bytes {offset}-{end - 1}/{size}" if size else "bytes */0"},
                )
            if response.status_code in (200, 201):
                await report(progress, size, size)
                return _video_id(response)
            if response.status_code == 308:
                stored = _stored(response)
                if stored > offset:
                    failures = 0  # progress: the retry budget is per stall
                offset, ask_status = stored, False
                await report(progress, offset, size)
                continue
            error = _error(response, "sending the video")
            if not error.transient:
                raise error
        except TRANSPORT_ERRORS as exc:
            error = UploadError(f"YouTube upload interrupted: {transport_message(exc)}", transient=True)
        if failures >= policy.retries:
            raise UploadError(f"{error} (after {failures} retries)", transient=True, status=error.status)
        await asyncio.sleep(policy.delays()[failures])
        failures, ask_status = failures + 1, True


@task(name="upload to YouTube", task_run_name="upload {path.name} to YouTube", cache_policy=NO_CACHE,
      persist_result=False, log_prints=False)
async def upload_video(
    credentials: YouTubeCredentials,
    path: Path,
    video: YouTubeVideo,
    *,
    content_type: str = "video/*",
    api_url: str = API_URL,
    chunk_bytes: int = 8 * 1024 * 1024,
    policy: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> str:
    """Upload ``path`` to the channel of ``credentials``; returns the new video's id."""
    path = Path(path)
    size = file_size(path)
    async with credentials.get_client(api_url, policy.timeout) as client:
        session = await start_session(client, credentials, video, size, content_type)
        return await send_file(client, session, path, size, chunk_bytes=chunk_bytes, policy=policy,
                               progress=progress)


def watch_url(video_id: str, prefix: str = WATCH_URL) -> str:
    return f"{prefix}{video_id}"

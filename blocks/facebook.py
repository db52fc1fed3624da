"""Facebook: the credentials block (an httpx client factory) and the Graph API video upload task.

Uploads go to ``/{page_id}/videos`` (``me``: the user's own timeline; Facebook accepts
uploads to Pages with a Page access token). A file up to ``chunk_bytes`` goes in one
multipart ``POST`` (``source``); a larger one in the resumable phases: ``upload_phase=start``
with ``file_size`` answers a session and the first ``start_offset``/``end_offset``; each
``transfer`` sends ``video_file_chunk`` = the bytes between the offsets the server returned
last (a failed transfer is sent again from the last confirmed offset, or from the offsets
an error's ``error_data`` names); ``finish`` sets title, description, privacy and
``no_story``. With an ``app_secret``, every call carries ``appsecret_proof``
(HMAC-SHA256 of the token keyed by the secret).

Talks to the Graph API with httpx: facebook-sdk 3.1.0, the last release, only accepts
Graph API versions 2.8 to 3.1, which Facebook no longer serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from .meta import DOCUMENTATION_URL, LOGO_URL
from .uploads import (
    RETRY_STATUS, TRANSPORT_ERRORS, Progress, RetryPolicy, ServiceCredentials, UploadError, file_size, read_range,
    report,
    transport_message,
)

GRAPH_URL = "https://graph-video.facebook.com"
GRAPH_VERSION = "v23.0"
WATCH_URL = "https://www.facebook.com/watch/?v="
TOKEN_CODES = {102, 190, 463, 467}
LIMIT_CODES = {4, 17, 32, 341, 368, 613}
TRANSIENT_CODES = {1, 2}


class FacebookCredentials(ServiceCredentials):
    """A Facebook user or Page access token, and the app secret for ``appsecret_proof``."""

    _block_type_name = "Dragonflow Facebook Credentials"
    _block_type_slug = "dragonflow-facebook-credentials"
    _description = "Facebook user or Page access token (and app secret) for video uploads through the Graph API."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.facebook import FacebookCredentials

    facebook_credentials = FacebookCredentials.load("BLOCK_NAME")
    client = facebook_credentials.get_client()  # an httpx.AsyncClient on the Graph API
    ```
    """

    access_token: SecretStr = Field(description="User or Page access token allowed to publish videos.")
    app_secret: SecretStr | None = Field(None, description="App secret, to sign calls with appsecret_proof.")

    def auth_fields(self) -> dict[str, str]:
        """``access_token`` and, with an app secret, ``appsecret_proof``."""
        token = self.access_token.get_secret_value()
        fields = {"access_token": token}
        secret = self.app_secret.get_secret_value() if self.app_secret else ""
        if secret and secret != "-":
            fields["appsecret_proof"] = hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        return fields

    def get_client(self, graph_url: str = GRAPH_URL, version: str = GRAPH_VERSION,
                   timeout: float = 300.0) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on ``graph_url/version`` (send ``auth_fields()`` with each call)."""
        return httpx.AsyncClient(base_url=f"{graph_url.rstrip('/')}/{version.strip('/')}",
                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)), trust_env=False)


class GraphError(UploadError):
    """A Graph API error; ``offsets`` are the resume offsets its ``error_data`` gives, if any."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None,
                 offsets: tuple[int, int] | None = None):
        super().__init__(message, transient=transient, status=status)
        self.offsets = offsets


def _graph_error(response: httpx.Response, when: str) -> GraphError:
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = error.get("code")
    message = str(error.get("error_user_msg") or error.get("message") or response.text[:200])
    detail = f" (code {code}: {message})" if code is not None else (f" ({message})" if message else "")
    offsets = None
    data = error.get("error_data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    if isinstance(data, dict) and "start_offset" in data and "end_offset" in data:
        offsets = (int(data["start_offset"]), int(data["end_offset"]))
    if code in TOKEN_CODES or status == 401:
        return GraphError(f"Facebook refused the access token: it is invalid or expired{detail}", status=status)
    if code in LIMIT_CODES:
        return GraphError(f"Facebook rate limit or quota reached while {when}{detail}; not retried", status=status)
    transient = bool(error.get("is_transient")) or code in TRANSIENT_CODES or status in RETRY_STATUS
    return GraphError(f"Facebook answered HTTP {status} while {when}{detail}", transient=transient,
                      status=status, offsets=offsets)


async def _post(client: httpx.AsyncClient, path: str, when: str, data: dict[str, str],
                files: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        response = await client.post(path, data=data, files=files)
    except TRANSPORT_ERRORS as exc:
        raise GraphError(f"Facebook upload interrupted while {when}: {transport_message(exc)}",
                         transient=True) from None
    if response.status_code != 200:
        raise _graph_error(response, when)
    try:
        return response.json()
    except ValueError:
        raise GraphError(f"Facebook answered a body that is not JSON while {when}") from None


def _details(title: str, description: str, privacy: str | None, no_story: bool) -> dict[str, str]:
    fields = {"title": title, "description": description, "no_story": "true" if no_story else "false"}
    if privacy:
        fields["privacy"] = json.dumps({"value": privacy})
    return {k: v for k, v in fields.items() if v != ""}


async def _retrying(policy: RetryPolicy, call) -> Any:
    for attempt in range(policy.retries + 1):
        try:
            return await call()
        except UploadError as exc:
            if not exc.transient or attempt >= policy.retries:
                raise
        await asyncio.sleep(policy.delays()[attempt])
    raise AssertionError("unreachable")


@task(name="upload to Facebook", task_run_name="upload {path.name} to Facebook", cache_policy=NO_CACHE,
      persist_result=False, log_prints=False)
async def upload_video(
    credentials: FacebookCredentials,
    path: Path,
    *,
    page_id: str = "me",
    title: str = "",
    description: str = "",
    privacy: str | None = None,
    no_story: bool = False,
    content_type: str = "video/mp4",
    graph_url: str = GRAPH_URL,
    graph_version: str = GRAPH_VERSION,
    chunk_bytes: int = 8 * 1024 * 1024,
    policy: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> str:
    """Upload ``path`` to ``/{page_id}/videos``; returns the new video's id."""
    path = Path(path)
    size = file_size(path)
    target = f"/{page_id.strip('/') or 'me'}/videos"
    auth = credentials.auth_fields()
    details = _details(title, description, privacy, no_story)
    async with credentials.get_client(graph_url, graph_version, policy.timeout) as client:
        if size <= chunk_bytes:
            async def single() -> dict[str, Any]:
                body = await read_range(path, 0, size)
                return await _post(client, target, "uploading the video", {**auth, **details},
                                   {"source": (path.name, body, content_type)})

            answer = await _retrying(policy, single)
            await report(progress, size, size)
            if "id" not in answer:
                raise GraphError("Facebook answered no video id")
            return str(answer["id"])

        started = await _retrying(policy, lambda: _post(
            client, target, "starting the upload", {**auth, "upload_phase": "start", "file_size": str(size)}))
        try:
            session, video_id = str(started["upload_session_id"]), str(started["video_id"])
            start, end = int(started["start_offset"]), int(started["end_offset"])
        except (KeyError, TypeError, ValueError):
            raise GraphError("Facebook answered no upload session") from None
        failures = 0
        while start < end:
            chunk = await read_range(path, start, end)
            try:
                answer = await _post(client, target, "sending the video", {
                    **auth, "upload_phase": "transfer", "upload_session_id": session, "start_offset": str(start),
                }, {"video_file_chunk": ("chunk", chunk, "application/octet-stream")})
                start, end = int(answer["start_offset"]), int(answer["end_offset"])
                failures = 0
                await report(progress, start, size)
            except GraphError as exc:
                if not exc.transient and exc.offsets is None or failures >= policy.retries:
                    raise
                if exc.offsets is not None:
                    start, end = exc.offsets
                await asyncio.sleep(policy.delays()[min(failures, policy.retries - 1)] if policy.retries else 0)
                failures += 1
            except (KeyError, TypeError, ValueError):
                raise GraphError("Facebook answered no offsets for a transfer") from None
        finished = await _retrying(policy, lambda: _post(
            client, target, "finishing the upload",
            {**auth, "upload_phase": "finish", "upload_session_id": session, **details}))
        if not finished.get("success", True):
            raise GraphError("Facebook did not accept the finished upload")
        return video_id


def watch_url(video_id: str, prefix: str = WATCH_URL) -> str:
    return f"{prefix}{video_id}"

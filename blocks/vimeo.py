"""Vimeo: the credentials block (a PyVimeo client factory) and the tus upload task.

The upload follows Vimeo's API v3 with PyVimeo (``vimeo``): ``GET /me`` for the upload
quota (``upload_quota.space.free``), ``POST /me/videos`` with ``upload.approach = tus`` and
the size, which answers the video's ``uri``, ``link`` and ``upload.upload_link``; the file
goes in tus 1.0 ``PATCH``\\ es with ``Upload-Offset`` (tuspy, PyVimeo's tus client); then a
metadata ``PATCH`` of the video (name, description).

PyVimeo's own ``upload()`` gives tuspy 3 retries of 30 s sleeps each and no backoff; here
tuspy sends one chunk at a time with no retries of its own, and a failed chunk is tried
again after our backoff, from the offset a tus ``HEAD`` reports (never re-sending what the
server confirmed). PyVimeo and tuspy use ``requests``: their calls run in a thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import requests
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader
from vimeo import VimeoClient
from vimeo.exceptions import APIRateLimitExceededFailure

from .meta import DOCUMENTATION_URL, LOGO_URL
from .uploads import RETRY_STATUS, Progress, RetryPolicy, ServiceCredentials, UploadError, file_size, report

API_URL = "https://api.vimeo.com"


class VimeoCredentials(ServiceCredentials):
    """An OAuth2 access token of a Vimeo account with the upload and edit scopes."""

    _block_type_name = "Dragonflow Vimeo Credentials"
    _block_type_slug = "dragonflow-vimeo-credentials"
    _description = "OAuth2 access token (upload and edit scopes) of a Vimeo account, for video uploads."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.vimeo import VimeoCredentials

    vimeo_credentials = VimeoCredentials.load("BLOCK_NAME")
    client = vimeo_credentials.get_client()  # a vimeo.VimeoClient
    ```
    """

    oauth2_token: SecretStr = Field(description="OAuth2 access token with the upload and edit scopes.")

    def get_client(self, api_url: str = API_URL) -> VimeoClient:
        """A PyVimeo client on ``api_url`` authenticated with the token."""
        client = VimeoClient(token=self.oauth2_token.get_secret_value())
        client.API_ROOT = api_url.rstrip("/")
        return client


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("developer_message") or body.get("error") or "")[:300]
    except ValueError:
        return response.text[:200]


def _check(response: requests.Response, when: str, *expected: int) -> dict[str, Any]:
    status = response.status_code
    if status in expected:
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise UploadError(f"Vimeo answered a body that is not JSON while {when}") from None
    detail = _message(response)
    detail = f": {detail}" if detail else ""
    if status == 401:
        raise UploadError(f"Vimeo refused the oauth2_token: it is invalid or expired (HTTP 401){detail}",
                          status=status)
    if status == 403:
        raise UploadError(f"Vimeo refused {when}: the token lacks the upload or edit scope (HTTP 403){detail}",
                          status=status)
    raise UploadError(f"Vimeo answered HTTP {status} while {when}{detail}", transient=status in RETRY_STATUS,
                      status=status)


async def _call(when: str, policy: RetryPolicy, request, *expected: int) -> dict[str, Any]:
    """One API call in a thread, tried again after transient failures."""
    for attempt in range(policy.retries + 1):
        try:
            response = await asyncio.to_thread(request)
            return _check(response, when, *expected)
        except APIRateLimitExceededFailure:
            error = UploadError(f"Vimeo rate limit reached while {when} (HTTP 429)", transient=True, status=429)
        except requests.RequestException as exc:
            error = UploadError(f"Vimeo unreachable while {when}: {type(exc).__name__}", transient=True)
        except UploadError as exc:
            error = exc
        if not error.transient or attempt >= policy.retries:
            raise error
        await asyncio.sleep(policy.delays()[attempt])
    raise AssertionError("unreachable")


def free_space(me: dict[str, Any]) -> int | None:
    """Free upload space of ``GET /me`` (API 3.4: ``upload_quota.space.free``)."""
    space = ((me.get("upload_quota") or {}).get("space") or {})
    free = space.get("free")
    return int(free) if free is not None else None


async def send_tus(upload_link: str, path: Path, size: int, *, chunk_bytes: int, policy: RetryPolicy,
                   progress: Progress | None = None) -> None:
    """``PATCH`` the file to a tus ``upload_link`` chunk by chunk, resuming from ``HEAD``."""
    with open(path, "rb") as stream:
        try:  # the tus client asks the server's offset (HEAD) when it is made
            uploader = await asyncio.to_thread(
                Uploader, file_stream=stream, url=upload_link, chunk_size=chunk_bytes, retries=0, retry_delay=0)
        except (TusCommunicationError, requests.RequestException) as exc:
            raise UploadError(f"Vimeo's upload server unreachable: {type(exc).__name__}", transient=True) from None
        uploader.stop_at = size
        failures = 0
        while uploader.offset < size:
            before = uploader.offset
            try:
                await asyncio.to_thread(uploader.upload_chunk)
            except (TusUploadFailed, TusCommunicationError, requests.RequestException, TypeError, ValueError) as exc:
                status = getattr(exc, "status_code", None)
                if status is not None and status not in RETRY_STATUS:
                    raise UploadError(f"Vimeo's upload server answered HTTP {status}", status=status) from None
                if failures >= policy.retries:
                    raise UploadError(f"Vimeo upload interrupted ({type(exc).__name__}, after {failures} retries)",
                                      transient=True) from None
                await asyncio.sleep(policy.delays()[failures])
                failures += 1
                try:
                    uploader.offset = await asyncio.to_thread(uploader.get_offset)
                except TusCommunicationError:
                    pass  # the next PATCH is tried from the last known offset (its HEAD failed too)
                continue
            if uploader.offset > before:
                failures = 0
            await report(progress, uploader.offset, size)


@task(name="upload to Vimeo", task_run_name="upload {path.name} to Vimeo", cache_policy=NO_CACHE,
      persist_result=False, log_prints=False)
async def upload_video(
    credentials: VimeoCredentials,
    path: Path,
    *,
    title: str = "",
    description: str = "",
    api_url: str = API_URL,
    chunk_bytes: int = 8 * 1024 * 1024,
    policy: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Upload ``path`` to the Vimeo account of ``credentials``.

    Returns ``link`` (the video's page), ``uri``, ``uploaded_file_size`` and ``free_space``
    (bytes left after the upload, when Vimeo reports a quota)."""
    path = Path(path)
    size = file_size(path)
    client = credentials.get_client(api_url)
    me = await _call("reading the account's quota", policy,
                     lambda: client.get("/me", params={"fields": "upload_quota"}), 200)
    free = free_space(me)
    if free is not None and free < size:
        raise UploadError(f"Vimeo upload quota exceeded: the video is {size} bytes, the account has {free} free")
    metadata = {"name": title, "description": description} if title or description else {}
    attempt = await _call("creating the video", policy, lambda: client.post(
        "/me/videos", data={"upload": {"approach": "tus", "size": size}, **metadata},
        params={"fields": "uri,link,upload"}), 200, 201)
    upload = attempt.get("upload") or {}
    if upload.get("approach") != "tus" or not upload.get("upload_link") or not attempt.get("uri"):
        raise UploadError("Vimeo answered no tus upload link for the new video")
    await send_tus(upload["upload_link"], path, size, chunk_bytes=chunk_bytes, policy=policy, progress=progress)
    if metadata:
        await _call("setting the title and description", policy,
                    lambda: client.patch(attempt["uri"], data=metadata, params={"fields": "uri"}), 200)
    return {
        "uri": attempt["uri"],
        "link": attempt.get("link") or f"https://vimeo.com/{attempt['uri'].rsplit('/', 1)[-1]}",
        "uploaded_file_size": size,
        "free_space": free - size if free is not None else None,
    }

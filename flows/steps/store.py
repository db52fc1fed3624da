"""``store``: save an output file in an output store and return its public URL.

The store is chosen by ``task_store.type`` through ``RESOLVERS``, the one mapping from a
type to the ``OutputStore`` serving it: persistent and volatile are the storage block
documents of those names; ``s3_signed`` PUTs the file to the signed URL given (its URL
without the signature is the result); ``youtube`` uploads a video output to YouTube (the
watch URL is the result). A new store type is one resolver here and one value of
``TaskStore.type``. ``store`` is a step (task run ``store output.jpg``); outside a flow
call ``store.fn(path, name, relative=..., to=...)``.

A storage block's file is written whole or not at all: on a file system (local, FTP, SFTP)
it is written under a temporary name and renamed once complete; on an object store (S3,
GCS, Azure) the object only appears once its upload completed. A write that fails ends
the task with the backend's message, and nothing is left under the final name.

``credentials_block`` and ``as_upload_step`` are shared with the upload tasks
(``flows/upload.py``): a named credentials block an account may use, and a service's
upload task with the upload settings (retries, backoff).
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import SecretStr

from blocks import youtube
from blocks.storage import OutputStore, load_store
from blocks.uploads import RetryPolicy, UploadError, is_transient, stream_range
from flows.errors import FetchError, TaskError
from flows.params import TaskStore
from flows.run_scope import LOCAL_ACCOUNT, current_run
from flows.settings import Settings, get_settings
from flows.contract.net import check_url_allowed, tls_context
from flows.steps.step import step, step_log

C = TypeVar("C", bound=CredentialsBlock)


def retry_policy(settings: Settings | None = None) -> RetryPolicy:
    """The upload settings as the uploaders' retry policy."""
    settings = settings or get_settings()
    return RetryPolicy(settings.upload_retries, settings.upload_retry_delay, settings.upload_timeout)


def as_upload_step(upload_task: Any) -> Any:
    """A service's upload task with the Prefect retries of the settings (transient failures
    only: each is a new upload), or its plain function with ``DRAGONFLOW_STEP_TASKS=false``."""
    settings = get_settings()
    if not settings.step_tasks:
        return upload_task.fn
    return upload_task.with_options(
        retries=settings.upload_task_retries,
        retry_delay_seconds=settings.upload_retry_delay,
        retry_condition_fn=is_transient,
    )


async def credentials_block(block_type: type[C], name: str, account: str) -> C:
    """The saved credentials block ``name``, when ``account`` may use it; TaskError otherwise."""
    try:
        block = await block_type.aload(name)
    except ValueError:
        raise TaskError(f"no saved {block_type.get_block_type_name()} block named {name!r}") from None
    if not block.usable_by(account):
        raise TaskError(f"account {account!r} may not use the credentials block {name!r}")
    return block


def _unsigned(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class SignedUrlStore:
    """``s3_signed``: PUT the output to a presigned URL (streamed, Content-Type set)."""

    def __init__(self, url: str, policy: RetryPolicy | None = None):
        self.url = url
        self.policy = policy or retry_policy()

    async def _put_once(self, local: Path, content_type: str, size: int) -> httpx.Response:
        try:
            addresses = await check_url_allowed(self.url)
        except FetchError as exc:
            raise TaskError(f"s3_signed url refused: {exc.reason}") from None
        target = httpx.URL(self.url)
        headers = {"Host": target.netloc.decode("ascii"), "Content-Type": content_type, "Content-Length": str(size)}
        async with httpx.AsyncClient(trust_env=False, verify=tls_context(), timeout=self.policy.timeout) as client:
            request = client.build_request("PUT", target.copy_with(host=str(addresses[0])), headers=headers,
                                           content=stream_range(local, 0, size),
                                           extensions={"sni_hostname": target.host})
            return await client.send(request)

    async def put(self, local: Path, relative: str) -> str:
        content_type = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        size = local.stat().st_size
        for attempt in range(self.policy.retries + 1):
            try:
                response = await self._put_once(local, content_type, size)
                if response.status_code < 300:
                    return _unsigned(self.url)
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                transient = response.status_code >= 500 or response.status_code == 429
            except httpx.TransportError as exc:
                error, transient = type(exc).__name__, True
            if not transient or attempt >= self.policy.retries:
                raise TaskError(f"could not PUT {Path(relative).name} to the s3_signed url: {error}")
            await asyncio.sleep(self.policy.delays()[attempt])
        raise AssertionError("unreachable")


class YouTubeStore:
    """``youtube``: a video output uploaded to YouTube with the storage's parameters."""

    def __init__(self, task_store: TaskStore, account: str):
        self.task_store = task_store
        self.account = account

    async def credentials(self) -> youtube.YouTubeCredentials:
        store = self.task_store
        if store.credentials and not store.access_token:
            return await credentials_block(youtube.YouTubeCredentials, store.credentials, self.account)
        return youtube.YouTubeCredentials(access_token=store.access_token or SecretStr(""),
                                          developer_key=store.developer_key)

    async def put(self, local: Path, relative: str) -> str:
        content_type = mimetypes.guess_type(local.name)[0] or ""
        if not content_type.startswith("video/"):
            raise TaskError(f"storage youtube takes video outputs only, not {local.name}")
        settings, store = get_settings(), self.task_store
        video = youtube.YouTubeVideo(title=store.title or "", description=store.description, tags=store.tags,
                                     category_id=store.category_id, privacy_status=store.privacy_status)
        try:
            video_id = await as_upload_step(youtube.upload_video)(
                await self.credentials(), local, video, content_type=content_type, api_url=settings.youtube_api_url,
                chunk_bytes=settings.upload_chunk_bytes, policy=retry_policy(settings))
        except UploadError as exc:
            raise TaskError(str(exc)) from None
        return youtube.watch_url(video_id, settings.youtube_watch_url)


async def _storage_block(task_store: TaskStore) -> OutputStore:
    return await load_store(task_store.type)


async def _signed_url(task_store: TaskStore) -> OutputStore:
    return SignedUrlStore(task_store.url.get_secret_value())


async def _youtube(task_store: TaskStore) -> OutputStore:
    try:
        account = current_run().account
    except LookupError:
        account = LOCAL_ACCOUNT
    return YouTubeStore(task_store, account)


RESOLVERS: dict[str, Callable[[TaskStore], Awaitable[OutputStore]]] = {
    "persistent": _storage_block,
    "volatile": _storage_block,
    "s3_signed": _signed_url,
    "youtube": _youtube,
}


async def resolve_store(task_store: TaskStore) -> OutputStore:
    """The output store a task's ``task_store`` names."""
    return await RESOLVERS[task_store.type](task_store)


async def put_complete(to: OutputStore, local: Path, relative: str) -> str:
    """``to.put(local, relative)`` (every store writes a file whole or not at all); a
    failing backend becomes a TaskError with its message."""
    try:
        return await to.put(local, relative)
    except TaskError:
        raise
    except Exception as exc:  # each backend has its own exception tree
        reason = str(exc) or type(exc).__name__
        raise TaskError(f"could not store {Path(relative).name}: {reason}") from exc


def _run_name(parameters: dict[str, Any]) -> str:
    return f"store {parameters['name']}{Path(parameters['path']).suffix}"


@step("store", run_name=_run_name)
async def store(path: Path, name: str, *, relative: str | None = None, to: OutputStore | None = None) -> str:
    """Save ``path`` as output ``name``; returns its public URL.

    By default (inside a task flow) the file goes to ``<account>/<KEY>/<name><suffix>`` in
    the task's ``task_store``; a caller outside a task flow, or one with its own layout
    (VimQu's ``target_path``), passes ``relative`` and, for another store than the task's
    (persistent outside a task flow), ``to``.
    """
    if relative is None:
        run = current_run()
        relative = f"{run.account}/{run.key}/{name}{Path(path).suffix}"
    if to is None:
        try:
            task_store = current_run().params.task_store
        except LookupError:  # a direct call outside a task flow
            task_store = TaskStore()
        to = await resolve_store(task_store)
    url = await put_complete(to, Path(path), relative)
    step_log("stored %s as %s", Path(path).name, url)
    return url

"""Registered storages: the places a VimQu account reads inputs from and uploads outputs to
(``/api/storages``), one Prefect block type per driver: S3 (any S3-compatible server), Google
Cloud Storage, Azure Blob, FTP(S) and SFTP. Secrets are ``SecretStr`` fields, so each storage
is a block document an operator can also edit in the Prefect UI, and the API never shows one.

Every storage talks through an fsspec filesystem (s3fs, gcsfs, adlfs, fsspec's FTP, sshfs) and
offers the same operations: ``put`` (an ``OutputStore``: uploads, returns the stored path),
``get`` (downloads, for ``source_type: storage`` inputs), ``head`` (a file's info and first
bytes: the API's input check), ``check`` (list, write and delete a
probe object), ``public_view`` (the storage as the API shows it, secrets masked) and the API's
JSON in (``RegisteredStorage.from_api``, ``update_from_api``). Blocking filesystem calls run in
threads; the event loop never waits on a server.

Paths: a storage's paths are absolute from its root (``/outputs/hls/master.m3u8``, as VimQu's
``target_path`` and result ``files[].path``); on the server they live under the bucket, the
container, or the FTP/SFTP ``root`` directory. ``..`` never leaves the root.

Identity: the id the API shows is the Prefect **block document id** (a UUID, the same as in
the block's address in the Prefect UI); documents are named ``vimqu-<account>-<12 hex>``
(unique, and the owner is visible in the UI's list). ``load_registered`` reads a storage by id
in one request whatever its driver; ``list_registered`` lists an account's storages.
"""

from __future__ import annotations

import asyncio
import functools
import ntpath
import posixpath
import socket
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import fsspec
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, ValidationError

from ..atomic import put_whole
from ..meta import DOCUMENTATION_URL, LOGO_URL

MASK = "****"
DOCUMENT_PREFIX = "vimqu-"
CONNECT_TIMEOUT = 10.0  # seconds to reach a storage server
IO_TIMEOUT = 120.0  # seconds without progress on one request
PROBE_PREFIX = ".dragonflow-check-"
REACHED_FOR = 5.0  # seconds a successful connection test is trusted
_PAGE = 200


class StorageFieldError(ValueError):
    """The API's JSON does not describe a valid storage; ``errors`` maps each field to its
    messages (VimQu's 422 body: ``{"message": ..., "errors": {field: [messages]}}``)."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))


class StorageNotFound(LookupError):
    """No registered storage has this id (or it belongs to another account)."""


class StorageUnavailable(OSError):
    """A storage server refused or failed an operation. ``reason`` is the backend's own words;
    ``transient`` is True when the server could not be reached or said the failure is
    temporary (worth retrying)."""

    def __init__(self, storage: "RegisteredStorage", operation: str, reason: str, transient: bool = False):
        self.driver, self.storage_name, self.operation = storage.driver, storage.name, operation
        self.reason, self.transient = reason, transient
        super().__init__(f"{storage.driver} storage {storage.name!r}: {operation} failed: {reason}")


def _reason(exc: BaseException) -> str:
    """The backend's own explanation of ``exc`` (S3 or Azure error code and message, FTP
    reply, SSH disconnect reason, connection error), followed by its causes when they add
    something; first lines only."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        response = getattr(current, "response", None)
        code = getattr(current, "error_code", None)
        if isinstance(response, dict) and "Error" in response:  # botocore ClientError
            error = response["Error"]
            text = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
        elif code:  # azure.core HttpResponseError
            message = str(getattr(current, "reason", None) or current).strip().splitlines()[0]
            text = f"{getattr(code, 'value', code)}: {message}"
        else:
            lines = str(current).strip().splitlines()
            text = lines[0] if lines else type(current).__name__
            name = type(current).__name__
            if name not in text and (isinstance(current, (ConnectionError, TimeoutError)) or name.endswith(
                    ("Error", "Exception", "_perm", "_temp", "_reply"))) and name not in ("OSError", "Exception"):
                text = f"{name}: {text}"
        if not any(text in part or part in text for part in parts):
            parts.append(text)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def _transient(exc: BaseException) -> bool:
    """True when ``exc`` (or a cause) says the server could not be reached at all, or
    answered that the failure is temporary (an FTP 4xx reply, ftplib's ``error_temp``)."""
    names = ("ConnectionError", "ConnectTimeout", "EndpointConnectionError", "ClientConnectorError",
             "ServiceRequestError", "ConnectionRefusedError", "TimeoutError", "ServerDisconnectedError",
             "error_temp")
    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            return False
        if isinstance(current, (ConnectionError, TimeoutError)) or type(current).__name__ in names:
            return True
        current = current.__cause__ or current.__context__
    return False


def _clean(relative: str) -> str:
    """``relative`` as a path under the root: no leading slash, no way out with ``..``."""
    if "\\" in relative or ntpath.splitdrive(relative)[0]:
        raise ValueError(f"storage path {relative!r}: use forward slashes")
    return posixpath.normpath("/" + relative).lstrip("/")


def _endpoint(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _url_address(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


class RegisteredStorage(Block):
    """A storage a VimQu account registered: where its inputs are read and outputs uploaded."""

    _block_type_name = "Dragonflow Registered Storage"
    _block_type_slug = "dragonflow-registered-storage"
    _description = "A storage an account registered (base of the S3, GCS, Azure, FTP and SFTP storages)."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.registered import RegisteredStorage

    registered_storage = RegisteredStorage.load("BLOCK_NAME")
    ```
    """
    _secret_fields: ClassVar[tuple[str, ...]] = ()
    _base_kind: ClassVar[str] = "root"
    _reuse_fs: ClassVar[bool] = True  # one connection per block instance, shared by threads
    _fs_cache: Any = None
    _reached_at: float = 0.0

    name: str = Field(min_length=1, max_length=255, description="Name the account gave the storage.")
    driver: str = Field(description="The storage driver.")
    account: str = Field(description="Name of the account that owns the storage.")

    # --- identity ---------------------------------------------------------------------

    @property
    def storage_id(self) -> str | None:
        """The id the API shows: the block document id, once saved."""
        return str(self._block_document_id) if self._block_document_id else None

    # --- the filesystem -----------------------------------------------------------------

    def _base(self) -> str:
        """The root of the storage's paths on its filesystem (bucket, container, directory)."""
        raise NotImplementedError

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        """A new filesystem connected with the current settings (blocking)."""
        raise NotImplementedError

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The storage's fsspec filesystem, made once per block instance (blocking: it may
        connect; call it from a thread in async code)."""
        if self._fs_cache is None:
            self._fs_cache = self._filesystem()
        return self._fs_cache

    def object_path(self, relative: str) -> str:
        """The filesystem path of storage path ``relative`` (``/outputs/a.jpg``)."""
        clean = _clean(relative)
        return posixpath.join(self._base(), clean) if clean != "." else self._base()

    @staticmethod
    def stored_path(relative: str) -> str:
        """The storage path clients see for ``relative``: absolute from the storage root."""
        return "/" + _clean(relative).lstrip(".")

    def _address(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the server the storage talks to."""
        raise NotImplementedError

    def _reach(self, operation: str) -> None:
        """Fail fast when the server does not even accept a TCP connection (the backends'
        own retries would take from seconds to minutes to say so). Skipped through a proxy
        and for a few seconds after a success."""
        if time.monotonic() - self._reached_at < REACHED_FOR:
            return
        scheme, host, port = self._address()
        if scheme in ("http", "https") and urllib.request.getproxies().get(scheme) \
                and not urllib.request.proxy_bypass(host):
            return
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise StorageUnavailable(self, operation, f"cannot connect to {host}:{port}: {_reason(exc)}",
                                     transient=True) from exc
        self._reached_at = time.monotonic()

    def _operation_fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem one operation uses (blocking)."""
        return self.fs

    def _release(self, fs: fsspec.AbstractFileSystem) -> None:
        """Done with ``fs`` for this operation."""

    def _run(self, operation: str, function, *args, missing: bool = False):
        """Run a blocking ``function(fs, *args)`` and turn backend failures into
        StorageUnavailable; with ``missing``, a missing file stays FileNotFoundError."""
        fs = None
        try:
            self._reach(operation)
            fs = self._operation_fs()
            return function(fs, *args)
        except StorageUnavailable:
            raise
        except FileNotFoundError as exc:
            if missing:
                raise
            raise StorageUnavailable(self, operation, _reason(exc)) from exc
        except Exception as exc:  # every backend has its own exception tree
            transient = _transient(exc)
            if transient:
                self._fs_cache = None  # reconnect next time
            raise StorageUnavailable(self, operation, _reason(exc), transient) from exc
        finally:
            if fs is not None:
                self._release(fs)

    # --- operations ---------------------------------------------------------------------

    def _upload(self, fs: fsspec.AbstractFileSystem, local: Path, target: str) -> None:
        """Upload ``local`` to ``target``, whole or not at all (``blocks.atomic``); file
        servers make its folders first."""
        put_whole(fs, local, target)
        fs.invalidate_cache(posixpath.dirname(target))

    def _download(self, fs: fsspec.AbstractFileSystem, source: str, target: Path) -> None:
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            if not fs.isfile(source):
                raise FileNotFoundError(f"{self.driver} storage {self.name!r}: no file {source}")
            fs.get_file(source, str(partial))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)

    async def put(self, local: Path, relative: str) -> str:
        """Upload ``local`` to ``relative`` (``/outputs/hls/master.m3u8``) under the root;
        return the stored path. Nothing is left under the final name unless complete."""
        target = self.object_path(relative)
        if _clean(relative) == ".":
            raise ValueError("storage path names no file")
        if not Path(local).is_file():
            raise FileNotFoundError(f"no local file {local}")
        await asyncio.to_thread(self._run, f"upload to {self.stored_path(relative)}", self._upload, Path(local),
                                target)
        return self.stored_path(relative)

    async def get(self, relative: str, target: Path) -> None:
        """Download storage path ``relative`` to local file ``target`` (FileNotFoundError
        when there is no such file)."""
        await asyncio.to_thread(functools.partial(self._run, missing=True), f"download of {self.stored_path(relative)}",
                                self._download, self.object_path(relative), Path(target))

    @staticmethod
    def _head(fs: fsspec.AbstractFileSystem, path: str, size: int) -> tuple[dict[str, Any], bytes]:
        info = fs.info(path)
        length = min(size, info.get("size") or 0)
        if info.get("type") == "directory" or not length:
            return info, b""
        return info, fs.cat_file(path, start=0, end=length)

    async def head(self, relative: str, size: int) -> tuple[dict[str, Any], bytes]:
        """(fsspec ``info``, first ``size`` bytes) of storage path ``relative``; no bytes for a
        directory or an empty file. FileNotFoundError when nothing is there, ValueError for a
        path with backslashes, StorageUnavailable when the server fails."""
        target = self.object_path(relative)
        return await asyncio.to_thread(functools.partial(self._run, missing=True),
                                       f"read of {self.stored_path(relative)}", self._head, target, size)

    def _check(self, fs: fsspec.AbstractFileSystem) -> None:
        base = self._base()
        name = PROBE_PREFIX + uuid.uuid4().hex[:12]
        probe = posixpath.join(base, name)
        steps = (
            ("list /", lambda: fs.ls(base, detail=False)),
            (f"write /{name}", lambda: self._write_probe(fs, probe)),
            (f"delete /{name}", lambda: fs.rm_file(probe)),
        )
        for step, call in steps:
            try:
                call()
            except Exception as exc:
                reason = _reason(exc)
                if step.startswith("list") and isinstance(exc, FileNotFoundError):
                    reason = f"{self._base_kind} {base!r} does not exist ({reason})"
                raise StorageUnavailable(self, f"check ({step})", reason, _transient(exc)) from exc
            finally:
                fs.invalidate_cache()

    def _write_probe(self, fs: fsspec.AbstractFileSystem, probe: str) -> None:
        fs.pipe_file(probe, b"dragonflow storage check\n")

    async def check(self) -> None:
        """Connect with the current settings, list the root, write a probe object and delete
        it. StorageUnavailable (with the backend's reason) when any step fails."""

        def _check() -> None:
            self._reached_at = 0.0
            self._reach("check (connect)")
            try:
                fs = self._filesystem()
            except Exception as exc:
                raise StorageUnavailable(self, "check (connect)", _reason(exc), _transient(exc)) from exc
            try:
                self._check(fs)
            finally:
                self._release(fs)
            if self._reuse_fs:
                self._fs_cache = fs

        await asyncio.to_thread(_check)

    # --- the API's view ---------------------------------------------------------------

    @classmethod
    def api_fields(cls) -> tuple[str, ...]:
        """The fields a client sets through the API (all but the owner)."""
        return tuple(name for name in cls.model_fields if name != "account")

    def public_view(self) -> dict[str, Any]:
        """The storage as the API shows it: id, name, driver and every setting, each secret
        replaced by ``****`` (or null when unset)."""
        view: dict[str, Any] = {"id": self.storage_id}
        for field in self.api_fields():
            value = getattr(self, field)
            if field in self._secret_fields or isinstance(value, SecretStr):
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                value = MASK if secret else None
            view[field] = value
        return view

    def problems(self) -> dict[str, list[str]]:
        """Errors that need more than one field to see (e.g. a password or a key)."""
        return {}

    @classmethod
    def driver_class(cls, driver: Any) -> type["RegisteredStorage"]:
        if driver not in DRIVERS:
            raise StorageFieldError({"driver": [f"must be one of {', '.join(DRIVERS)}"]})
        return DRIVERS[driver]

    @classmethod
    def _validated(cls, data: dict[str, Any], errors: dict[str, list[str]] | None = None) -> "RegisteredStorage":
        """The storage ``data`` describes; StorageFieldError with ``errors`` and every
        problem found (each field's messages)."""
        errors = dict(errors or {})
        data = {key: value for key, value in data.items() if key not in errors}
        try:
            storage = cls.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "storage"
                message = error["msg"].removeprefix("Value error, ")
                errors.setdefault(field, []).append(message)
            raise StorageFieldError(errors) from None
        errors.update(storage.problems())
        if errors:
            raise StorageFieldError(errors)
        return storage

    @classmethod
    def _unknown(cls, payload: dict[str, Any]) -> dict[str, list[str]]:
        allowed = set(cls.api_fields())
        return {key: [f"not a field of {cls.model_fields['driver'].default} storages"]
                for key in payload if key not in allowed}

    @classmethod
    def from_api(cls, payload: Any, *, account: str) -> "RegisteredStorage":
        """A new storage of ``account`` from the API's JSON ``{"name", "driver", ...}``;
        StorageFieldError naming each bad field."""
        if not isinstance(payload, dict):
            raise StorageFieldError({"storage": ["must be a JSON object"]})
        storage_class = cls.driver_class(payload.get("driver"))
        return storage_class._validated({**payload, "account": account}, storage_class._unknown(payload))

    def update_from_api(self, payload: Any) -> "RegisteredStorage":
        """Apply the API's JSON (any subset of the fields) to this storage. A secret sent back
        as ``****`` (what the API shows) keeps its value; ``driver`` cannot change."""
        if not isinstance(payload, dict):
            raise StorageFieldError({"storage": ["must be a JSON object"]})
        if "id" in payload and payload["id"] in (None, self.storage_id):  # the view sent back
            payload = {key: value for key, value in payload.items() if key != "id"}
        errors = self._unknown(payload)
        if "driver" in payload and payload["driver"] != self.driver:
            errors["driver"] = ["cannot be changed: register a new storage"]
        data = {field: getattr(self, field) for field in type(self).model_fields}
        data.update({key: value for key, value in payload.items()
                     if key not in ("account", "driver") and not (key in self._secret_fields and value == MASK)})
        updated = type(self)._validated(data, errors)
        for field in type(self).model_fields:
            setattr(self, field, getattr(updated, field))
        self._fs_cache = None
        return self


DRIVERS: dict[str, type[RegisteredStorage]] = {}
"""Driver name -> storage class (filled by ``blocks.storages``)."""

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
import io
import json
import ntpath
import posixpath
import socket
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import fsspec
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator

from .credentials import S3Credentials
from .meta import DOCUMENTATION_URL, LOGO_URL

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
        """Upload ``local`` to ``target``. Object stores make an object visible only once its
        upload completed (single PUT or completed multipart/block list), so this is atomic
        there; file servers override it with a temporary name and a rename."""
        fs.put_file(str(local), target)
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


# --- S3 ---------------------------------------------------------------------------------

class S3Storage(RegisteredStorage):
    """A bucket of S3 or any S3-compatible server (MinIO, Ceph, R2, ...)."""

    _block_type_name = "Dragonflow Registered S3 Storage"
    _block_type_slug = "dragonflow-registered-s3"
    _description = "An S3 (or S3-compatible) bucket a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.registered import S3Storage

    s3_storage = S3Storage.load("BLOCK_NAME")
    path = await s3_storage.put(Path("master.m3u8"), "/outputs/hls/master.m3u8")
    ```
    """
    _secret_fields = ("secret_access_key",)

    driver: Literal["s3"] = Field("s3", description="The storage driver: s3.")
    bucket: str = Field(min_length=3, max_length=255, description="Bucket the storage's paths are in.")
    region: str | None = Field(None, description="Region of the bucket, e.g. eu-west-1.")
    endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible server; none = AWS.")
    access_key_id: str = Field(min_length=1, description="Access key ID.")
    secret_access_key: SecretStr = Field(description="Secret access key.")

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _endpoint(value)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if "/" in value:
            raise ValueError("a bucket name has no slash")
        return value

    _base_kind = "bucket"

    def _base(self) -> str:
        return self.bucket

    def _address(self) -> tuple[str, str, int]:
        if self.endpoint_url:
            return _url_address(self.endpoint_url)
        return "https", f"s3.{self.region}.amazonaws.com" if self.region else "s3.amazonaws.com", 443

    def credentials(self) -> S3Credentials:
        """The storage's S3 credentials block (the fsspec client factory)."""
        return S3Credentials(aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
                             region_name=self.region, endpoint_url=self.endpoint_url)

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        options = self.credentials().storage_options()
        options["config_kwargs"] = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": IO_TIMEOUT,
                                    "retries": {"max_attempts": 2, "mode": "standard"}}
        return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **options)


# --- Google Cloud Storage ---------------------------------------------------------------

class GCSStorage(RegisteredStorage):
    """A Google Cloud Storage bucket."""

    _block_type_name = "Dragonflow Registered GCS Storage"
    _block_type_slug = "dragonflow-registered-gcs"
    _description = "A Google Cloud Storage bucket a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.registered import GCSStorage

    gcs_storage = GCSStorage.load("BLOCK_NAME")
    path = await gcs_storage.put(Path("video.mp4"), "/outputs/video.mp4")
    ```
    """
    _secret_fields = ("credentials_json",)

    driver: Literal["gcs"] = Field("gcs", description="The storage driver: gcs.")
    bucket: str = Field(min_length=3, max_length=222, description="Bucket the storage's paths are in.")
    credentials_json: SecretStr | None = Field(
        None, description="Service account key file (JSON); may be omitted only with an emulator's endpoint_url.")
    endpoint_url: str | None = Field(None, description="Endpoint of a GCS emulator; none = Google.")

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _endpoint(value)

    @field_validator("credentials_json", mode="before")
    @classmethod
    def _credentials(cls, value: Any) -> Any:
        if isinstance(value, dict):  # the key file's JSON object itself
            value = json.dumps(value)
        if value in (None, ""):
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        try:
            info = json.loads(text)
        except (TypeError, ValueError):
            raise ValueError("must be the JSON of a service account key") from None
        if not isinstance(info, dict) or "type" not in info:
            raise ValueError("must be the JSON of a service account key (an object with a \"type\")")
        return value

    def problems(self) -> dict[str, list[str]]:
        if self.credentials_json is None and self.endpoint_url is None:
            return {"credentials_json": ["is required (the service account key JSON)"]}
        return {}

    _base_kind = "bucket"

    def _base(self) -> str:
        return self.bucket

    def _address(self) -> tuple[str, str, int]:
        return _url_address(self.endpoint_url or "https://storage.googleapis.com")

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        if self.credentials_json is not None:
            token: Any = json.loads(self.credentials_json.get_secret_value())
            project = token.get("project_id")
        else:  # an emulator: no credentials at all (never the machine's own)
            token, project = "anon", "dragonflow"
        options: dict[str, Any] = {"token": token, "project": project, "requests_timeout": IO_TIMEOUT}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        # gcsfs's core filesystem (the JSON API), not the default ExtendedGcsFileSystem: that
        # one first asks the gRPC storage-control API for the bucket's layout, which
        # emulators do not serve (60 s per bucket before it falls back to the core).
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(skip_instance_cache=True, use_listings_cache=False, **options)


# --- Azure Blob -------------------------------------------------------------------------

class AzureStorage(RegisteredStorage):
    """An Azure Blob Storage container."""

    _block_type_name = "Dragonflow Registered Azure Storage"
    _block_type_slug = "dragonflow-registered-azure"
    _description = "An Azure Blob Storage container a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.registered import AzureStorage

    azure_storage = AzureStorage.load("BLOCK_NAME")
    path = await azure_storage.put(Path("manifest.mpd"), "/outputs/dash/manifest.mpd")
    ```
    """
    _secret_fields = ("account_key", "connection_string")

    driver: Literal["azure"] = Field("azure", description="The storage driver: azure.")
    container: str = Field(min_length=3, max_length=63, description="Container the storage's paths are in.")
    account_name: str | None = Field(None, description="Storage account name (with account_key).")
    account_key: SecretStr | None = Field(None, description="Storage account key (with account_name).")
    connection_string: SecretStr | None = Field(
        None, description="Connection string, instead of account_name and account_key.")
    endpoint_url: str | None = Field(
        None, description="Blob endpoint, e.g. Azurite's http://127.0.0.1:10000/devstoreaccount1; none = Azure.")

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _endpoint(value)

    @field_validator("connection_string")
    @classmethod
    def _connection_string(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            pairs = [part.split("=", 1) for part in value.get_secret_value().split(";") if part.strip()]
            if not pairs or any(len(pair) != 2 for pair in pairs):
                raise ValueError("must be key=value pairs separated by semicolons")
            return value
        return None

    def problems(self) -> dict[str, list[str]]:
        if self.connection_string is not None:
            return {}
        errors: dict[str, list[str]] = {}
        if not self.account_name:
            errors["account_name"] = ["is required (or give connection_string)"]
        if self.account_key is None or not self.account_key.get_secret_value():
            errors["account_key"] = ["is required (or give connection_string)"]
        return errors

    _base_kind = "container"

    def _base(self) -> str:
        return self.container

    def _address(self) -> tuple[str, str, int]:
        if self.connection_string is not None:
            settings = dict(part.split("=", 1) for part in self.connection_string.get_secret_value().split(";")
                            if "=" in part)
            if settings.get("BlobEndpoint"):
                return _url_address(settings["BlobEndpoint"])
            account = settings.get("AccountName", "")
            suffix = settings.get("EndpointSuffix", "core.windows.net")
            return _url_address(f"{settings.get('DefaultEndpointsProtocol', 'https')}://{account}.blob.{suffix}")
        return _url_address(self.endpoint_url or f"https://{self.account_name}.blob.core.windows.net")

    def _connection(self) -> str:
        """The connection string: given, or made of the account and endpoint (always
        explicit, so no AZURE_STORAGE_* variable of this machine is ever used)."""
        if self.connection_string is not None:
            return self.connection_string.get_secret_value()
        key = self.account_key.get_secret_value() if self.account_key else ""
        if self.endpoint_url:
            protocol = urlsplit(self.endpoint_url).scheme
            return (f"DefaultEndpointsProtocol={protocol};AccountName={self.account_name};AccountKey={key};"
                    f"BlobEndpoint={self.endpoint_url};")
        return (f"DefaultEndpointsProtocol=https;AccountName={self.account_name};AccountKey={key};"
                "EndpointSuffix=core.windows.net")

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("abfs", skip_instance_cache=True, use_listings_cache=False,
                                 connection_string=self._connection(), anon=False,
                                 connection_timeout=int(CONNECT_TIMEOUT), read_timeout=int(IO_TIMEOUT))


# --- FTP --------------------------------------------------------------------------------

class _FileServerStorage(RegisteredStorage):
    """FTP and SFTP: a directory tree under ``root``; uploads go to a temporary name in the
    target's directory and are renamed into place, so a file is complete under its name."""

    _block_type_name = "Dragonflow Registered File Server Storage"
    _block_type_slug = "dragonflow-registered-file-server"

    root: str = Field("/", description="Directory on the server the storage's paths are under.")
    _directories: set[str] = PrivateAttr(default_factory=set)

    @field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        value = (value or "/").strip()
        if "\\" in value:
            raise ValueError("use forward slashes")
        return posixpath.normpath(value) if value not in ("/", "") else "/"

    _base_kind = "directory"

    def _base(self) -> str:
        return self.root

    def _address(self) -> tuple[str, str, int]:
        return self.driver, self.host, self.port

    def _temporary(self, target: str) -> str:
        directory, name = posixpath.split(target)
        return posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.part")

    def _make_directories(self, fs: fsspec.AbstractFileSystem, directory: str) -> None:
        """Make ``directory`` and its missing parents (the root too). Idempotent, and safe when
        concurrent uploads (each on its own connection) make the same ones: a directory that
        another upload made between the check and the create is fine. (fsspec's FTP
        ``makedirs(exist_ok=True)`` checks, then creates, and fails with ``550 File exists``
        when it loses that race.) Directories made or seen are remembered for this block
        until an upload into one fails."""
        if directory in self._directories:
            return
        missing: list[str] = []
        current = directory
        while current not in ("", "/") and not fs.isdir(current):
            missing.append(current)
            current = posixpath.dirname(current)
        for path in reversed(missing):
            try:
                fs.mkdir(path, create_parents=False)
            except Exception:
                fs.invalidate_cache(posixpath.dirname(path))
                if not fs.isdir(path):
                    raise
        self._directories.add(directory)

    def _upload(self, fs: fsspec.AbstractFileSystem, local: Path, target: str) -> None:
        temporary = self._temporary(target)
        self._make_directories(fs, posixpath.dirname(target))
        try:
            self._send(fs, local, temporary)
            try:
                fs.mv(temporary, target)
            except Exception:
                # servers that refuse to rename onto an existing file: remove it first (the
                # name is briefly absent, never a partial file)
                fs.invalidate_cache()
                if not fs.exists(target):
                    raise
                fs.rm_file(target)
                fs.mv(temporary, target)
        except BaseException:
            self._directories.discard(posixpath.dirname(target))  # looked for again next time
            try:
                fs.rm_file(temporary)
            except Exception:
                pass
            raise
        finally:
            fs.invalidate_cache()

    def _send(self, fs: fsspec.AbstractFileSystem, local: Path, remote: str) -> None:
        fs.put_file(str(local), remote)


class FTPStorage(_FileServerStorage):
    """An FTP server (FTPS with ``tls``)."""

    _block_type_name = "Dragonflow Registered FTP Storage"
    _block_type_slug = "dragonflow-registered-ftp"
    _description = "An FTP or FTPS server a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.registered import FTPStorage

    ftp_storage = FTPStorage.load("BLOCK_NAME")
    await ftp_storage.get("/inputs/movie.webm", Path("movie.webm"))
    ```
    """
    _secret_fields = ("password",)

    driver: Literal["ftp"] = Field("ftp", description="The storage driver: ftp.")
    host: str = Field(min_length=1, max_length=255, description="Host name or address of the FTP server.")
    port: int = Field(21, ge=1, le=65535, description="Port of the FTP server.")
    username: str | None = Field(None, description="User name; none = anonymous.")
    password: SecretStr | None = Field(None, description="Password.")
    tls: bool = Field(False, description="Use explicit FTPS (AUTH TLS) for commands and data.")

    # fsspec's FTPFileSystem holds one ftplib connection, which is not thread-safe: every
    # operation opens its own connection (the ``fs`` property too) and closes it.
    _reuse_fs = False

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._filesystem()

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("ftp", host=self.host, port=self.port, username=self.username or None,
                                 password=self.password.get_secret_value() if self.password else None,
                                 tls=self.tls, timeout=CONNECT_TIMEOUT)

    def _operation_fs(self) -> fsspec.AbstractFileSystem:
        return self._filesystem()

    def _release(self, fs: fsspec.AbstractFileSystem) -> None:
        try:
            fs.ftp.quit()
        except Exception:
            try:
                fs.ftp.close()
            except Exception:
                pass

    def _send(self, fs: fsspec.AbstractFileSystem, local: Path, remote: str) -> None:
        # One STOR for the whole file: fsspec's FTPFile writer sends each 64 KiB block as its
        # own REST+STOR on a new data connection.
        with local.open("rb") as source:
            fs.ftp.storbinary(f"STOR {remote}", source, blocksize=1 << 20)

    def _write_probe(self, fs: fsspec.AbstractFileSystem, probe: str) -> None:
        fs.ftp.storbinary(f"STOR {probe}", io.BytesIO(b"dragonflow storage check\n"))

    def _download(self, fs: fsspec.AbstractFileSystem, source: str, target: Path) -> None:
        import ftplib

        try:
            super()._download(fs, source, target)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                raise FileNotFoundError(f"ftp storage {self.name!r}: {source}: {exc}") from None
            raise


# --- SFTP -------------------------------------------------------------------------------

class SFTPStorage(_FileServerStorage):
    """An SFTP (SSH) server."""

    _block_type_name = "Dragonflow Registered SFTP Storage"
    _block_type_slug = "dragonflow-registered-sftp"
    _description = "An SFTP server a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.registered import SFTPStorage

    sftp_storage = SFTPStorage.load("BLOCK_NAME")
    path = await sftp_storage.put(Path("sprite.jpg"), "/outputs/thumbs/sprite.jpg")
    ```
    """
    _secret_fields = ("password", "private_key", "private_key_passphrase")

    driver: Literal["sftp"] = Field("sftp", description="The storage driver: sftp.")
    host: str = Field(min_length=1, max_length=255, description="Host name or address of the SSH server.")
    port: int = Field(22, ge=1, le=65535, description="Port of the SSH server.")
    username: str = Field(min_length=1, description="User name.")
    password: SecretStr | None = Field(None, description="Password (or give private_key).")
    private_key: SecretStr | None = Field(None, description="Private key, OpenSSH or PEM text (or give password).")
    private_key_passphrase: SecretStr | None = Field(None, description="Passphrase of an encrypted private_key.")
    host_key: str | None = Field(
        None, description="The server's public host key (OpenSSH format) to verify; none = not verified.")

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if not value:
            return None
        import asyncssh

        try:
            asyncssh.import_public_key(value.strip())
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ValueError(f"not a public key: {exc}") from None
        return value.strip()

    def _client_keys(self) -> list[Any] | None:
        if self.private_key is None or not self.private_key.get_secret_value():
            return None
        import asyncssh

        passphrase = self.private_key_passphrase.get_secret_value() if self.private_key_passphrase else None
        return [asyncssh.import_private_key(self.private_key.get_secret_value().strip() + "\n", passphrase)]

    def problems(self) -> dict[str, list[str]]:
        has_password = self.password is not None and bool(self.password.get_secret_value())
        if not has_password and (self.private_key is None or not self.private_key.get_secret_value()):
            return {"password": ["is required (or give private_key)"]}
        try:
            self._client_keys()
        except Exception as exc:  # asyncssh.KeyImportError and friends
            return {"private_key": [f"cannot be read: {exc}"]}
        return {}

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        import asyncssh

        options: dict[str, Any] = {
            "port": self.port, "username": self.username, "connect_timeout": CONNECT_TIMEOUT,
            "known_hosts": ([asyncssh.import_public_key(self.host_key)], [], []) if self.host_key else None,
            # nothing from this machine: no agent, no ~/.ssh keys or config
            "agent_path": None, "config": [], "client_keys": self._client_keys() or [],
        }
        if self.password is not None and self.password.get_secret_value():
            options["password"] = self.password.get_secret_value()
        return fsspec.filesystem("sftp", host=self.host, skip_instance_cache=True, **options)


DRIVERS: dict[str, type[RegisteredStorage]] = {
    "s3": S3Storage, "gcs": GCSStorage, "azure": AzureStorage, "ftp": FTPStorage, "sftp": SFTPStorage}
REGISTERED_STORAGES = tuple(DRIVERS.values())
_BY_SLUG = {storage_class.get_block_type_slug(): storage_class for storage_class in REGISTERED_STORAGES}


# --- block documents --------------------------------------------------------------------

def _document_name(account: str) -> str:
    return f"{DOCUMENT_PREFIX}{account}-{uuid.uuid4().hex[:12]}"


async def save_registered(storage: RegisteredStorage) -> str:
    """Save ``storage`` as a block document (a new one the first time); return its id."""
    if storage._block_document_id is None:
        await storage.asave(_document_name(storage.account))
    else:
        await storage.asave(storage._block_document_name, overwrite=True)
    return storage.storage_id


async def load_registered(storage_id: str, account: str | None = None) -> RegisteredStorage:
    """Registered storage ``storage_id`` (secrets included); StorageNotFound when there is
    none, or when ``account`` is given and does not own it."""
    try:
        document_id = uuid.UUID(str(storage_id))
    except ValueError:
        raise StorageNotFound(storage_id) from None
    async with get_client() as client:
        try:
            document = await client.read_block_document(document_id, include_secrets=True)
        except ObjectNotFound:
            raise StorageNotFound(storage_id) from None
    storage_class = _BY_SLUG.get(document.block_type.slug if document.block_type else "")
    if storage_class is None:
        raise StorageNotFound(storage_id)
    storage = storage_class._from_block_document(document)
    if account is not None and storage.account != account:
        raise StorageNotFound(storage_id)
    return storage


async def lookup_registered(storage_id: str, account: str | None = None) -> RegisteredStorage | None:
    """``load_registered`` as the source chain's lookup: None when there is no such storage
    (or, with ``account``, none of that account's)."""
    try:
        return await load_registered(storage_id, account)
    except StorageNotFound:
        return None


async def list_registered(account: str) -> list[RegisteredStorage]:
    """Every storage ``account`` registered, oldest first."""
    async with get_client() as client:

        async def of_type(slug: str) -> list:
            documents: list = []
            while True:
                try:
                    page = await client.read_block_documents_by_type(slug, offset=len(documents), limit=_PAGE,
                                                                     include_secrets=True)
                except ObjectNotFound:  # the type is not registered yet: none saved
                    return documents
                documents += page
                if len(page) < _PAGE:
                    return documents

        pages = await asyncio.gather(*(of_type(slug) for slug in _BY_SLUG))
    documents = sorted((doc for page in pages for doc in page), key=lambda doc: (doc.created or 0, str(doc.id)))
    storages = [_BY_SLUG[doc.block_type.slug]._from_block_document(doc) for doc in documents
                if doc.block_type and doc.block_type.slug in _BY_SLUG]
    return [storage for storage in storages if storage.account == account]


async def delete_registered(storage_id: str, account: str | None = None) -> None:
    """Delete registered storage ``storage_id`` (StorageNotFound as ``load_registered``)."""
    storage = await load_registered(storage_id, account)
    async with get_client() as client:
        await client.delete_block_document(storage._block_document_id)


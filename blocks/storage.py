"""Storage systems for task output files, as Prefect blocks.

One block type, ``Dragonflow Storage``, with one block document per storage system a
client names in ``task_store.type``: ``persistent`` (the default, files kept until the
account's expiration) and ``volatile`` (files expire after 7 days). ``root`` is a local
directory or any fsspec URL (``s3://bucket/prefix``); ``public_url`` is where clients
download the files (the API serves local roots under ``/storage/<name>/``; a CDN or the
bucket's public address for ``s3://``); an ``s3://`` root without a ``public_url`` answers
presigned URLs valid ``url_lifetime`` seconds. ``credentials`` (an ``S3Credentials`` block)
are passed to fsspec for ``s3://`` roots. Listing, deleting and expiring files go through
fsspec, so they work alike on a local directory and on S3.

``OutputStore`` is the interface every place a task's output files can go implements
(a ``StorageBlock``; later a signed-URL PUT, a YouTube upload, VimQu's registered storages).
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem
from prefect.blocks.core import Block
from pydantic import Field

from .atomic import put_whole
from .credentials import S3Credentials
from .meta import DOCUMENTATION_URL, LOGO_URL

STORE_NAMES = ("persistent", "volatile")
DEFAULT_STORE = "persistent"


@runtime_checkable
class OutputStore(Protocol):
    """Where a task's output files go."""

    async def put(self, local: Path, relative: str) -> str:
        """Save ``local`` as ``relative`` (``account/KEY/output.jpg``); return its public URL."""


@dataclass(frozen=True)
class StoredFile:
    """One stored file: its path relative to the storage root, size and modification time."""

    path: str
    size: int
    modified: datetime


def _modified(info: dict) -> datetime:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


class StorageBlock(Block):
    """Where a task's output files go and the URL they are downloaded from."""

    _block_type_name = "Dragonflow Storage"
    _block_type_slug = "dragonflow-storage"
    _description = "Task output storage: a local directory or any fsspec URL (s3://...)."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storage import StorageBlock

    storage_block = StorageBlock.load("BLOCK_NAME")
    url = await storage_block.put(Path("out.jpg"), "account/KEY/output.jpg")
    ```
    """

    root: str = Field(description="Local directory or fsspec URL the files are written under.")
    public_url: str = Field(
        "", description="URL prefix clients download the files from; empty on an s3:// root: presigned URLs."
    )
    expire_days: int = Field(0, description="Files older than this are deleted; 0 keeps them.")
    credentials: S3Credentials | None = Field(None, description="Credentials for an s3:// root.")
    url_lifetime: int = Field(
        7 * 24 * 3600, ge=1, le=7 * 24 * 3600,
        description="Seconds a presigned download URL stays valid (s3:// roots without a public URL).",
    )

    @cached_property
    def location(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem ``root`` lives on (with the credentials) and root's path on it."""
        options = self.credentials.storage_options() if self.credentials else {}
        if self.root.startswith(("s3://", "s3a://")):  # presigned URLs with Signature V4 (V2 is retired)
            options.setdefault("config_kwargs", {}).setdefault("signature_version", "s3v4")
        return fsspec.core.url_to_fs(self.root, **options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self.location[0]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def object_path(self, relative: str) -> str:
        """The filesystem path of ``relative`` (``account/KEY/output.jpg``) under root."""
        root = self.location[1]
        clean = posixpath.normpath("/" + relative).lstrip("/")
        return posixpath.join(root, clean)

    @property
    def presigned(self) -> bool:
        """True when clients get presigned URLs (no ``public_url``, a filesystem that signs)."""
        return not self.public_url and not self.is_local

    def url_for(self, relative: str) -> str:
        """The URL clients download ``relative`` from (presigned: valid ``url_lifetime`` s)."""
        if self.public_url or self.is_local:
            return f"{self.public_url.rstrip('/')}/{relative}"
        try:
            return self.fs.sign(self.object_path(relative), expiration=self.url_lifetime)
        except NotImplementedError:
            raise ValueError(f"storage {self.root} cannot sign URLs: set its public_url") from None

    @cached_property
    def _unsigned_root(self) -> str:
        """The URL of root without a signature (what presigned URLs of its files start with)."""
        return self.fs.sign(self.object_path(""), expiration=60).split("?", 1)[0].rstrip("/")

    def relative_for_url(self, url: str) -> str | None:
        """``account/KEY/output.jpg`` when ``url`` points into this storage, else None."""
        try:
            prefix = (self._unsigned_root if self.presigned else self.public_url.rstrip("/")) + "/"
        except (NotImplementedError, ValueError):
            return None
        if not url.startswith(prefix):
            return None
        relative = posixpath.normpath(unquote(url[len(prefix):].split("?", 1)[0]))
        if relative.startswith("..") or relative.startswith("/"):
            return None
        return relative

    def files(self, relative_dir: str) -> list[StoredFile]:
        """Every file under ``relative_dir`` (recursively), or the file it names."""
        base = self.object_path("")
        target = self.object_path(relative_dir)
        if not self.fs.exists(target):
            return []
        found = self.fs.find(target, detail=True) if self.fs.isdir(target) else {target: self.fs.info(target)}
        return [
            StoredFile(posixpath.relpath(path, base), int(info.get("size") or 0), _modified(info))
            for path, info in sorted(found.items())
            if info.get("type") != "directory"
        ]

    def remove(self, relative: str) -> None:
        self.fs.rm_file(self.object_path(relative))

    async def put(self, local: Path, relative: str) -> str:
        """Copy ``local`` to ``relative`` under root, whole or not at all (``blocks.atomic``);
        return its public URL."""
        target = self.object_path(relative)

        def _put() -> None:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            put_whole(self.fs, local, target)

        await asyncio.to_thread(_put)
        return await asyncio.to_thread(self.url_for, relative)


_loaded: dict[str, StorageBlock] = {}


async def load_store(name: str) -> StorageBlock:
    """The storage block document ``name`` (cached for the life of the process)."""
    if name not in _loaded:
        _loaded[name] = await StorageBlock.aload(name)
    return _loaded[name]


async def open_stored(url: str) -> tuple[fsspec.AbstractFileSystem, str] | None:
    """(filesystem, path) when ``url`` is one of our own output files, else None.

    Lets one task's output feed the next without an HTTP round trip.
    """
    for name in STORE_NAMES:
        try:
            store = await load_store(name)
        except ValueError:
            continue
        relative = store.relative_for_url(url)
        if relative is not None:
            return store.fs, store.object_path(relative)
    return None

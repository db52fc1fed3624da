"""Writing a file so that its name never shows a partial one: the one write path of every
storage (output stores and registered storages).

Object stores (S3, GCS, Azure) make an object visible only once its upload completed (one
PUT, or a completed multipart/block list): the file is written under its name directly.
File systems (local, FTP, SFTP, ...) get it under a temporary name beside the target, then
a rename; the temporary file is removed when anything fails."""

from __future__ import annotations

import posixpath
import uuid
from pathlib import Path
from typing import Callable

import fsspec

OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "az", "abfss"}


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol
    return bool(OBJECT_STORES.intersection([protocol] if isinstance(protocol, str) else protocol))


def temporary_name(target: str) -> str:
    """``dir/.name.<random>.part`` beside ``dir/name``."""
    directory, name = posixpath.split(target)
    return posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.part")


def put_whole(fs: fsspec.AbstractFileSystem, local: Path, target: str,
              send: Callable[[str, str], None] | None = None) -> None:
    """Write ``local`` to ``target`` on ``fs``, whole or not at all (blocking). ``send(local,
    remote)`` writes one file (default ``fs.put_file``); an existing ``target`` is replaced
    (on servers that refuse to rename onto a file, removed first: the name is briefly
    absent, never partial)."""
    send = send or (lambda source, remote: fs.put_file(source, remote))
    if is_object_store(fs):
        send(str(local), target)
        return
    temporary = temporary_name(target)
    try:
        send(str(local), temporary)
        try:
            fs.mv(temporary, target)
        except Exception:
            fs.invalidate_cache()
            if not fs.exists(target):
                raise
            fs.rm_file(target)
            fs.mv(temporary, target)
    except BaseException:
        try:
            fs.rm_file(temporary)
        except Exception:  # never written, or the backend is gone: the failure is what matters
            pass
        raise

"""What FTP and SFTP storages share: a root directory on a server, folders made
before uploads, each file sent under a temporary name then renamed."""

from __future__ import annotations

import posixpath
from pathlib import Path

import fsspec
from pydantic import Field, PrivateAttr, field_validator

from ..atomic import put_whole
from .base import RegisteredStorage


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
        self._make_directories(fs, posixpath.dirname(target))
        try:
            put_whole(fs, local, target, send=lambda source, remote: self._send(fs, Path(source), remote))
        except BaseException:
            self._directories.discard(posixpath.dirname(target))  # looked for again next time
            raise
        finally:
            fs.invalidate_cache()

    def _send(self, fs: fsspec.AbstractFileSystem, local: Path, remote: str) -> None:
        fs.put_file(str(local), remote)

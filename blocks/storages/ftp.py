"""FTP(S) registered storages, through fsspec's FTP filesystem."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import fsspec
from pydantic import Field, SecretStr

from .base import CONNECT_TIMEOUT
from .file_server import _FileServerStorage


class FTPStorage(_FileServerStorage):
    """An FTP server (FTPS with ``tls``)."""

    _block_type_name = "Dragonflow Registered FTP Storage"
    _block_type_slug = "dragonflow-registered-ftp"
    _description = "An FTP or FTPS server a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storages.ftp import FTPStorage

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

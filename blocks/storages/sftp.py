"""SFTP registered storages, through sshfs (asyncssh)."""

from __future__ import annotations

from typing import Any, Literal

import fsspec
from pydantic import Field, SecretStr, field_validator

from .base import CONNECT_TIMEOUT
from .file_server import _FileServerStorage


class SFTPStorage(_FileServerStorage):
    """An SFTP (SSH) server."""

    _block_type_name = "Dragonflow Registered SFTP Storage"
    _block_type_slug = "dragonflow-registered-sftp"
    _description = "An SFTP server a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storages.sftp import SFTPStorage

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

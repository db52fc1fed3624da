"""Azure Blob registered storages, through adlfs."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import fsspec
from pydantic import Field, SecretStr, field_validator

from .base import CONNECT_TIMEOUT, IO_TIMEOUT, RegisteredStorage, _endpoint, _url_address


class AzureStorage(RegisteredStorage):
    """An Azure Blob Storage container."""

    _block_type_name = "Dragonflow Registered Azure Storage"
    _block_type_slug = "dragonflow-registered-azure"
    _description = "An Azure Blob Storage container a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storages.azure import AzureStorage

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

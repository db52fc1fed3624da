"""Credentials blocks: secrets for an external service and a client made from them
(prefect-aws style), nested in the blocks that use the service."""

from __future__ import annotations

from typing import Any

import fsspec
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from .meta import DOCUMENTATION_URL, LOGO_URL


class S3Credentials(CredentialsBlock):
    """Access to S3 or an S3-compatible service (MinIO, Ceph, R2, ...)."""

    _block_type_name = "Dragonflow S3 Credentials"
    _block_type_slug = "dragonflow-s3-credentials"
    _description = "Access key and endpoint of S3 or an S3-compatible service, for storages on s3:// roots."
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
    ```python
    from blocks.credentials import S3Credentials

    s3_credentials = S3Credentials.load("BLOCK_NAME")
    s3 = s3_credentials.get_client()  # an s3fs filesystem
    ```
    """

    aws_access_key_id: str | None = Field(None, description="Access key ID; none = the environment's credentials.")
    aws_secret_access_key: SecretStr | None = Field(None, description="Secret access key.")
    region_name: str | None = Field(None, description="Region, e.g. eu-west-1.")
    endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible service; none = AWS.")

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``fsspec`` / ``s3fs.S3FileSystem``."""
        options: dict[str, Any] = {}
        if self.aws_access_key_id:
            options["key"] = self.aws_access_key_id
        if self.aws_secret_access_key:
            options["secret"] = self.aws_secret_access_key.get_secret_value()
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region_name:
            options["client_kwargs"] = {"region_name": self.region_name}
        return options

    def get_client(self) -> fsspec.AbstractFileSystem:
        """An s3fs filesystem authenticated with these credentials."""
        return fsspec.filesystem("s3", **self.storage_options())

"""S3 (or S3-compatible) registered storages, through s3fs."""

from __future__ import annotations

from typing import Literal

import fsspec
from pydantic import Field, SecretStr, field_validator

from ..credentials import S3Credentials
from .base import CONNECT_TIMEOUT, IO_TIMEOUT, RegisteredStorage, _endpoint, _url_address


class S3Storage(RegisteredStorage):
    """A bucket of S3 or any S3-compatible server (MinIO, Ceph, R2, ...)."""

    _block_type_name = "Dragonflow Registered S3 Storage"
    _block_type_slug = "dragonflow-registered-s3"
    _description = "An S3 (or S3-compatible) bucket a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storages.s3 import S3Storage

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

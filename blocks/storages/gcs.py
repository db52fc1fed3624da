"""Google Cloud Storage registered storages, through gcsfs."""

from __future__ import annotations

import json
from typing import Any, Literal

import fsspec
from pydantic import Field, SecretStr, field_validator

from .base import IO_TIMEOUT, RegisteredStorage, _endpoint, _url_address


class GCSStorage(RegisteredStorage):
    """A Google Cloud Storage bucket."""

    _block_type_name = "Dragonflow Registered GCS Storage"
    _block_type_slug = "dragonflow-registered-gcs"
    _description = "A Google Cloud Storage bucket a VimQu account registered for inputs and outputs."
    _code_example = """
    ```python
    from pathlib import Path
    from blocks.storages.gcs import GCSStorage

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

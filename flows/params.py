"""Parameters every task accepts, and the mapping of validation errors to the wire shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, SecretStr, SerializerFunctionWrapHandler, ValidationError, ValidationInfo,
    field_validator, model_serializer, model_validator,
)
from pydantic_core import PydanticCustomError

STORE_TYPES = ("persistent", "volatile", "s3_signed", "youtube")  # one resolver each in flows.steps.store.RESOLVERS
SECRET_MASK = "**********"  # a secret's value in a run's parameters (the secret itself is a Secret block)
STORE_FIELDS = {
    "s3_signed": ("url",),
    "youtube": ("access_token", "developer_key", "credentials", "title", "description", "tags", "category_id",
                "privacy_status"),
}


class TaskStore(BaseModel):
    """Where output files go (``task_store`` in a task definition), with the parameters of
    the storage systems that take some (seed 000, "Storage systems")."""

    model_config = ConfigDict(extra="allow")

    type: Literal[STORE_TYPES] = Field(
        "persistent",
        description="Storage system: persistent (default), volatile (7 days), s3_signed (PUT to a signed URL) or"
        " youtube (video outputs uploaded to YouTube).",
    )
    url: SecretStr | None = Field(
        None, description="s3_signed: the S3 signed URL to PUT the output file to (a credential: kept secret)."
    )
    access_token: SecretStr | None = Field(None, description="youtube: the user's OAuth2 access token (upload scope).")
    developer_key: SecretStr | None = Field(None, description="youtube: API key of a registered app.")
    credentials: str | None = Field(None, description="youtube: name of a saved YouTube credentials block.")
    title: str | None = Field(None, description="youtube: video title.")
    description: str = Field("", description="youtube: video description.")
    tags: list[str] = Field(default_factory=list, description="youtube: video tags.")
    category_id: int = Field(22, description="youtube: video category id (22: People & Blogs).")
    privacy_status: Literal["public", "private", "unlisted"] = Field("public", description="youtube: privacy status.")

    @field_validator("url", mode="after")
    @classmethod
    def _signed_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        if info.data.get("type") == "s3_signed" and url and url != SECRET_MASK and not url.lower().startswith(
                ("http://", "https://")):
            raise PydanticCustomError("url", "url must be an http(s) S3 signed URL")
        return value

    @model_serializer(mode="wrap")
    def _own_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields of the chosen storage system (and extra keys), none that are unset."""
        data = handler(self)
        keep = {"type", *STORE_FIELDS.get(self.type, ()), *(self.model_extra or {})}
        return {k: v for k, v in data.items() if k in keep and v is not None}

    @model_validator(mode="after")
    def _required(self) -> "TaskStore":
        missing = []
        if self.type == "s3_signed" and not self.url:
            missing.append("url")
        if self.type == "youtube" and not (self.access_token or self.credentials):
            missing.append("access_token")
        if self.type == "youtube" and self.title is None:
            missing.append("title")
        if missing:
            raise PydanticCustomError("store_incomplete", "storage {type} requires {fields}",
                                      {"type": self.type, "fields": ", ".join(missing)})
        return self


class TaskParams(BaseModel):
    """Base of every task's parameter model: callbacks and storage.

    Unknown keys a client adds (``task_metas``, ...) are kept and echoed in status details.
    """

    model_config = ConfigDict(extra="allow")

    url_callback: str | None = Field(None, description="URL POSTed the status JSON on success.")
    url_errback: str | None = Field(None, description="URL POSTed the status JSON on failure.")
    task_store: TaskStore = Field(default_factory=TaskStore, description="Output storage system.")
    secrets: str | None = Field(
        None, description="Set by the API, never by a client: the Prefect Secret block holding this run's tokens."
    )


    @model_serializer(mode="wrap")
    def _no_empty_secrets(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("secrets") is None:
            data.pop("secrets", None)
        return data


def parameter_errors(error: ValidationError) -> dict[str, list[str]]:
    """``{field: [messages]}`` as the status ``error.parameters`` shows them."""
    fields: dict[str, list[str]] = {}
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "__all__"
        message = "this field is required" if item["type"] == "missing" else item["msg"]
        fields.setdefault(field, []).append(message)
    return fields

"""Parameters every task accepts, and the mapping of validation errors to the wire shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

STORE_TYPES = ("persistent", "volatile")  # one resolver each in flows.steps.store.RESOLVERS
PLANNED_STORE_TYPES = ("s3_signed", "youtube")  # the seed's other stores, not available yet


class TaskStore(BaseModel):
    """Where output files go (``task_store`` in a task definition)."""

    model_config = ConfigDict(extra="allow")

    type: Literal[STORE_TYPES] = Field(
        "persistent", description="Storage system: persistent (default) or volatile (7 days)."
    )

    @field_validator("type", mode="before")
    @classmethod
    def _not_yet(cls, value: object) -> object:
        if value in PLANNED_STORE_TYPES:
            raise PydanticCustomError("store_unavailable", "storage {type} is not available yet: use persistent"
                                      " or volatile", {"type": value})
        return value


class TaskParams(BaseModel):
    """Base of every task's parameter model: callbacks and storage.

    Unknown keys a client adds (``task_metas``, ...) are kept and echoed in status details.
    """

    model_config = ConfigDict(extra="allow")

    url_callback: str | None = Field(None, description="URL POSTed the status JSON on success.")
    url_errback: str | None = Field(None, description="URL POSTed the status JSON on failure.")
    task_store: TaskStore = Field(default_factory=TaskStore, description="Output storage system.")


def parameter_errors(error: ValidationError) -> dict[str, list[str]]:
    """``{field: [messages]}`` as the status ``error.parameters`` shows them."""
    fields: dict[str, list[str]] = {}
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "__all__"
        message = "this field is required" if item["type"] == "missing" else item["msg"]
        fields.setdefault(field, []).append(message)
    return fields

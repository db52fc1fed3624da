"""Tokens in task parameters never become plain flow-run parameters.

Anyone with access to the Prefect UI can read a flow run's parameters, so the tokens a
client sends with a task (every ``SecretStr`` field of its parameter model, including
``task_store``'s) are moved, when the run is created, into one Prefect ``Secret`` block
named per run (``dragonflow-run-<random>``); the run's parameters carry the masked values
and ``secrets``, the block's name. The task flow reveals them when it starts and deletes
the block when it ends (``flows.runtime.task_flow``). Blocks of runs that never ran
(deleted, crashed before starting) are removed by ``sweep`` after a day.

``redact`` masks the same fields in the raw definition of a task refused for invalid
parameters (its run keeps what the client sent, for the status ``details``).
"""

from __future__ import annotations

import json
import logging
import re
import secrets as random
import typing
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, SecretStr

from flows.errors import TaskError
from flows.params import SECRET_MASK, TaskParams

logger = logging.getLogger("dragonflow.secrets")

PREFIX = "dragonflow-run-"
MASK = SECRET_MASK
SECRET_SLUG = "secret"
SECRET_NAME = re.compile(r"token|secret|password|developer_key", re.IGNORECASE)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in typing.get_args(annotation))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def secret_paths(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """The paths of the secret fields of ``model`` and its nested models (``task_store``)."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if _is_secret(info.annotation):
            paths.append((name,))
        elif (inner := _model_of(info.annotation)) is not None:
            paths += [(name, *rest) for rest in secret_paths(inner)]
    return paths


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        data = getattr(data, part, None) if isinstance(data, BaseModel) else (
            data.get(part) if isinstance(data, dict) else None)
    return data


def conceal(params: TaskParams) -> tuple[dict[str, Any], dict[str, str]]:
    """(the run's JSON parameters with secrets masked, ``{"a.b": token}`` to keep)."""
    kept = {}
    for path in secret_paths(type(params)):
        value = _get(params, path)
        if isinstance(value, SecretStr) and value.get_secret_value() not in ("", MASK):
            kept[".".join(path)] = value.get_secret_value()
    dumped = params.model_dump(mode="json")  # SecretStr fields dump as the mask
    dumped.pop("secrets", None)
    return dumped, kept


def redact(raw: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``raw`` (a client's definition) with the value of every secret field of ``model``,
    and of any key named like a secret (``*token*``, ``*secret*``, ``developer_key``), masked."""
    clean = json.loads(json.dumps(raw, default=str))
    for path in secret_paths(model):
        parent = clean
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and parent.get(path[-1]) not in (None, ""):
            parent[path[-1]] = MASK

    def mask_named(data: Any) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if SECRET_NAME.search(str(key)) and isinstance(value, (str, int, float)) and value != "":
                    data[key] = MASK
                else:
                    mask_named(value)

    mask_named(clean)
    return clean


def new_name() -> str:
    return PREFIX + random.token_hex(16)


async def keep(name: str, values: dict[str, str], client: PrefectClient | None = None) -> None:
    """Save ``values`` as the Secret block ``name``."""
    await Secret(value=json.dumps(values)).asave(name, overwrite=True, client=client)


async def forget(name: str | None, client: PrefectClient | None = None) -> None:
    """Delete the Secret block ``name`` (nothing if there is none)."""
    if not name or not name.startswith(PREFIX):
        return
    if client is None:
        async with get_client() as own:
            return await forget(name, own)
    try:
        document = await client.read_block_document_by_name(name, SECRET_SLUG)
        await client.delete_block_document(document.id)
    except ObjectNotFound:
        pass


async def forget_quietly(name: str | None) -> None:
    """``forget``, logging instead of raising (the end of a run must not fail on it)."""
    try:
        await forget(name)
    except Exception as exc:  # noqa: BLE001 - swept later
        logger.warning("could not delete secret block %s: %s", name, type(exc).__name__)


async def reveal(params: TaskParams) -> TaskParams:
    """``params`` with the tokens of its Secret block put back (itself when it has none,
    or when its model has no ``secrets`` field: VimQu's tasks)."""
    if not getattr(params, "secrets", None):
        return params
    if not params.secrets.startswith(PREFIX):
        raise TaskError("secrets must name a run's secret block")
    try:
        values = (await Secret.aload(params.secrets)).get()  # Prefect parses a JSON string value
        values = json.loads(values) if isinstance(values, str) else values
    except ValueError:
        raise TaskError("the tokens of this task are gone (its run already ended once)") from None
    data = params.model_dump()  # SecretStr objects stay SecretStr
    for dotted, value in values.items():
        parent = data
        *head, last = dotted.split(".")
        for part in head:
            parent = parent[part]
        parent[last] = SecretStr(value)
    return type(params).model_validate(data)


async def sweep(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete per-run Secret blocks older than ``older_than`` (runs that never started or
    ended elsewhere); the number deleted."""
    cutoff = datetime.now(timezone.utc) - older_than
    deleted = 0
    async with get_client() as client:
        documents = await client.read_block_documents_by_type(SECRET_SLUG)
        for document in documents:
            created = document.created or cutoff
            if document.name and document.name.startswith(PREFIX) and created < cutoff:
                await client.delete_block_document(document.id)
                deleted += 1
    return deleted

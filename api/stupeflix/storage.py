"""Storage API (seed 000): list and delete an account's persistent output files, and set
their lifetime. An account only ever sees the files under its own prefix."""

from __future__ import annotations

import asyncio
import posixpath
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request

from api.errors import bad_request
from api.stupeflix.routes import as_bool, read_body
from blocks.account import AccountBlock
from blocks.storage import StorageBlock, StoredFile, load_store

router = APIRouter(prefix="/v2/storage", tags=["storage"])


def _when(value: Any, name: str) -> datetime | None:
    """An ISO 8601 date time; UTC when it has no zone."""
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(name, f"{name} must be an ISO 8601 date time, got {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def _account_files(store: StorageBlock, account: str, path: str) -> list[StoredFile]:
    prefix = posixpath.normpath(posixpath.join(account, path.strip("/")))
    if prefix != account and not prefix.startswith(account + "/"):
        raise bad_request("path", "path must stay inside your storage")
    return await asyncio.to_thread(store.files, prefix)


async def _usage(store: StorageBlock, account: str) -> int:
    return sum(f.size for f in await _account_files(store, account, ""))


async def _account(request: Request, params: dict[str, Any]) -> AccountBlock:
    return await request.app.state.accounts.authenticate(request, params)


@router.get("/files")
@router.get("/files/{path:path}")
async def list_files(request: Request, path: str = "") -> dict[str, Any]:
    """Files (name, size, last_modified) and directories under ``path``; ``recursive``."""
    account = await _account(request, dict(request.query_params))
    store = await load_store("persistent")
    base = posixpath.join(account.name, path.strip("/"))
    recursive = as_bool(request.query_params.get("recursive"))
    files, directories = [], set()
    for stored in await _account_files(store, account.name, path):
        name = posixpath.relpath(stored.path, base)
        if name == ".":
            name = posixpath.basename(stored.path)
        if not recursive and "/" in name:
            directories.add(name.split("/", 1)[0] + "/")
            continue
        files.append({"name": name, "size": stored.size, "last_modified": _iso(stored.modified)})
    return {
        "files": files,
        "directories": sorted(directories),
        "usage": sum(f["size"] for f in files),
    }


@router.delete("/files")
@router.delete("/files/{path:path}")
async def delete_files(request: Request, path: str = "") -> dict[str, Any]:
    """Delete files under ``path`` (or ``urls``), filtered by ``from``/``to``/``max_age``;
    ``dry_run`` only reports. Answers deleted, freed and the remaining usage."""
    body = await read_body(request)
    account = await _account(request, {**dict(request.query_params), **body})
    store = await load_store("persistent")
    if body.get("urls"):
        if not isinstance(body["urls"], list):
            raise bad_request("urls", "urls must be a list of URLs")
        mine = {f.path: f for f in await _account_files(store, account.name, "")}
        chosen = [mine[r] for r in (store.relative_for_url(str(u)) for u in body["urls"]) if r in mine]
    else:
        start, end = _when(body.get("from"), "from"), _when(body.get("to"), "to")
        if body.get("max_age") is not None:
            try:
                cutoff = datetime.now(timezone.utc) - timedelta(days=float(body["max_age"]))
            except (TypeError, ValueError):
                raise bad_request("max_age", "max_age must be a number of days")
            end = min(end, cutoff) if end else cutoff
        chosen = [
            f
            for f in await _account_files(store, account.name, path)
            if (start is None or f.modified >= start) and (end is None or f.modified <= end)
        ]
    dry_run = as_bool(body.get("dry_run"))
    if not dry_run:
        for stored in chosen:
            await asyncio.to_thread(store.remove, stored.path)
    freed = sum(f.size for f in chosen)
    usage = await _usage(store, account.name)
    return {
        "deleted": [posixpath.relpath(f.path, account.name) for f in chosen],
        "freed": freed,
        "usage": usage - freed if dry_run else usage,  # a dry run reports the usage it would leave
    }


@router.get("/expiration")
async def get_expiration(request: Request) -> int:
    """The lifetime of the account's output files, in days (0: never deleted)."""
    return (await _account(request, dict(request.query_params))).expiration_days


@router.post("/expiration")
async def set_expiration(request: Request) -> int:
    """Set the lifetime (``days``; 0: never) enforced by the scheduled expire-files flow."""
    body = await read_body(request)
    account = await _account(request, body)
    days = body.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise bad_request("days", "days must be a non-negative integer")
    account.expiration_days = days
    await account.asave(AccountBlock.document_name(account.name), overwrite=True)
    return days

"""Registered storages of the VimQu surface: ``/api/storages``.

``POST`` registers one (``{"name", "driver", ...driver fields}``: ``blocks.registered``),
checks it (list, write and delete a probe object) and answers **201** ``{"data": ...}``;
``GET`` lists the account's storages or reads one; ``PUT``/``PATCH`` change fields (a secret
sent back as ``****`` keeps its value) and check again; ``DELETE`` removes it (**204**). Each
storage is a Prefect block document (editable in the Prefect UI); its id is the document's.

Never a secret in an answer: storages are shown by ``public_view`` (secrets ``****``) and a
backend's error is scrubbed of the storage's secret values. Field errors are 422 naming each
field; a failed check is 422 with the backend's reason; another account's storage is 404.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from api.vimqu.auth import current_account
from api.vimqu.errors import invalid, not_found, scrub
from api.vimqu.body import read_json
from blocks.account import AccountBlock
from blocks.registered import (
    RegisteredStorage, StorageFieldError, StorageNotFound, StorageUnavailable, delete_registered, list_registered,
    load_registered, save_registered,
)

router = APIRouter(prefix="/api/storages", tags=["vimqu"])
logger = logging.getLogger("dragonflow.vimqu.storages")


async def checked(storage: RegisteredStorage) -> None:
    """422 with the backend's reason (secrets masked) when the storage does not work."""
    try:
        await storage.check()
    except StorageUnavailable as exc:
        reason = scrub(exc.reason, storage)
        raise invalid({"storage": [f"{exc.operation} failed: {reason}"]},
                      f"The storage check failed: {exc.driver} storage {exc.storage_name!r}: "
                      f"{exc.operation} failed: {reason}") from None


async def owned(storage_id: str, account: AccountBlock) -> RegisteredStorage:
    try:
        return await load_registered(storage_id, account.name)
    except StorageNotFound:
        raise not_found("storage", storage_id) from None


@router.post("", status_code=201)
async def create_storage(request: Request, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """Register a storage: checked, then saved as a Prefect block document."""
    try:
        storage = RegisteredStorage.from_api(await read_json(request), account=account.name)
    except StorageFieldError as exc:
        raise invalid(exc.errors) from None
    await checked(storage)
    await save_registered(storage)
    logger.info("account %s registered %s storage %s", account.name, storage.driver, storage.storage_id)
    return {"data": storage.public_view()}


@router.get("")
async def list_storages(account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """The account's storages, oldest first."""
    return {"data": [storage.public_view() for storage in await list_registered(account.name)]}


@router.get("/{storage_id}")
async def get_storage(storage_id: str, account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    return {"data": (await owned(storage_id, account)).public_view()}


@router.put("/{storage_id}")
@router.patch("/{storage_id}")
async def update_storage(request: Request, storage_id: str,
                         account: AccountBlock = Depends(current_account)) -> dict[str, Any]:
    """Change some fields of a storage (``driver`` cannot change); checked again, then saved."""
    storage = await owned(storage_id, account)
    try:
        storage.update_from_api(await read_json(request))
    except StorageFieldError as exc:
        raise invalid(exc.errors) from None
    await checked(storage)
    await save_registered(storage)
    return {"data": storage.public_view()}


@router.delete("/{storage_id}", status_code=204)
async def delete_storage(storage_id: str, account: AccountBlock = Depends(current_account)) -> Response:
    try:
        await delete_registered(storage_id, account.name)
    except StorageNotFound:
        raise not_found("storage", storage_id) from None
    return Response(status_code=204)

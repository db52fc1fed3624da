"""Registered storages, one module per driver (prefect-aws's shape): ``s3``, ``gcs``,
``azure``, ``ftp`` and ``sftp`` on ``base`` (the block every driver is, its errors and
helpers); here the driver table and the block documents an account's storages are saved as.
``blocks.registered`` re-exports every name, where they have always been imported from."""

from __future__ import annotations

import asyncio
import uuid

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from .azure import AzureStorage
from .base import DOCUMENT_PREFIX, DRIVERS, RegisteredStorage, StorageNotFound, _PAGE
from .ftp import FTPStorage
from .gcs import GCSStorage
from .s3 import S3Storage
from .sftp import SFTPStorage

DRIVERS.update({"s3": S3Storage, "gcs": GCSStorage, "azure": AzureStorage, "ftp": FTPStorage, "sftp": SFTPStorage})
REGISTERED_STORAGES = tuple(DRIVERS.values())
_BY_SLUG = {storage_class.get_block_type_slug(): storage_class for storage_class in REGISTERED_STORAGES}


# --- block documents --------------------------------------------------------------------

def _document_name(account: str) -> str:
    return f"{DOCUMENT_PREFIX}{account}-{uuid.uuid4().hex[:12]}"


async def save_registered(storage: RegisteredStorage) -> str:
    """Save ``storage`` as a block document (a new one the first time); return its id."""
    if storage._block_document_id is None:
        await storage.asave(_document_name(storage.account))
    else:
        await storage.asave(storage._block_document_name, overwrite=True)
    return storage.storage_id


async def load_registered(storage_id: str, account: str | None = None) -> RegisteredStorage:
    """Registered storage ``storage_id`` (secrets included); StorageNotFound when there is
    none, or when ``account`` is given and does not own it."""
    try:
        document_id = uuid.UUID(str(storage_id))
    except ValueError:
        raise StorageNotFound(storage_id) from None
    async with get_client() as client:
        try:
            document = await client.read_block_document(document_id, include_secrets=True)
        except ObjectNotFound:
            raise StorageNotFound(storage_id) from None
    storage_class = _BY_SLUG.get(document.block_type.slug if document.block_type else "")
    if storage_class is None:
        raise StorageNotFound(storage_id)
    storage = storage_class._from_block_document(document)
    if account is not None and storage.account != account:
        raise StorageNotFound(storage_id)
    return storage


async def lookup_registered(storage_id: str, account: str | None = None) -> RegisteredStorage | None:
    """``load_registered`` as the source chain's lookup: None when there is no such storage
    (or, with ``account``, none of that account's)."""
    try:
        return await load_registered(storage_id, account)
    except StorageNotFound:
        return None


async def list_registered(account: str) -> list[RegisteredStorage]:
    """Every storage ``account`` registered, oldest first."""
    async with get_client() as client:

        async def of_type(slug: str) -> list:
            documents: list = []
            while True:
                try:
                    page = await client.read_block_documents_by_type(slug, offset=len(documents), limit=_PAGE,
                                                                     include_secrets=True)
                except ObjectNotFound:  # the type is not registered yet: none saved
                    return documents
                documents += page
                if len(page) < _PAGE:
                    return documents

        pages = await asyncio.gather(*(of_type(slug) for slug in _BY_SLUG))
    documents = sorted((doc for page in pages for doc in page), key=lambda doc: (doc.created or 0, str(doc.id)))
    storages = [_BY_SLUG[doc.block_type.slug]._from_block_document(doc) for doc in documents
                if doc.block_type and doc.block_type.slug in _BY_SLUG]
    return [storage for storage in storages if storage.account == account]


async def delete_registered(storage_id: str, account: str | None = None) -> None:
    """Delete registered storage ``storage_id`` (StorageNotFound as ``load_registered``)."""
    storage = await load_registered(storage_id, account)
    async with get_client() as client:
        await client.delete_block_document(storage._block_document_id)

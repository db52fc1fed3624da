"""Registered storages, by the names they have always been imported under: the drivers now
live one per module in ``blocks.storages`` (``s3``, ``gcs``, ``azure``, ``ftp``, ``sftp``)."""

from .storages import (
    REGISTERED_STORAGES, delete_registered, list_registered, load_registered, lookup_registered, save_registered,
)
from .storages.azure import AzureStorage
from .storages.base import (
    CONNECT_TIMEOUT, DOCUMENT_PREFIX, DRIVERS, IO_TIMEOUT, MASK, PROBE_PREFIX, REACHED_FOR, RegisteredStorage,
    StorageFieldError, StorageNotFound, StorageUnavailable,
)
from .storages.ftp import FTPStorage
from .storages.gcs import GCSStorage
from .storages.s3 import S3Storage
from .storages.sftp import SFTPStorage

__all__ = [
    "AzureStorage", "CONNECT_TIMEOUT", "DOCUMENT_PREFIX", "DRIVERS", "FTPStorage", "GCSStorage", "IO_TIMEOUT", "MASK",
    "PROBE_PREFIX", "REACHED_FOR", "REGISTERED_STORAGES", "RegisteredStorage", "S3Storage", "SFTPStorage",
    "StorageFieldError", "StorageNotFound", "StorageUnavailable", "delete_registered", "list_registered",
    "load_registered", "lookup_registered", "save_registered",
]

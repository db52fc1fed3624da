"""Prefect blocks of dragonflow: storage systems, accounts, service credentials and the
storages VimQu accounts register."""

from .account import AccountBlock
from .credentials import S3Credentials
from .registered import (
    REGISTERED_STORAGES, AzureStorage, FTPStorage, GCSStorage, RegisteredStorage, S3Storage, SFTPStorage,
)
from .storage import OutputStore, StorageBlock

BLOCKS = (StorageBlock, AccountBlock, S3Credentials, *REGISTERED_STORAGES)

__all__ = ["AccountBlock", "AzureStorage", "BLOCKS", "FTPStorage", "GCSStorage", "OutputStore", "RegisteredStorage",
           "S3Credentials", "S3Storage", "SFTPStorage", "StorageBlock"]

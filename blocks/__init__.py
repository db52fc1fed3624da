"""Prefect blocks of dragonflow: storage systems, accounts, service credentials and the
storages VimQu accounts register."""

from .account import AccountBlock
from .credentials import S3Credentials
from .facebook import FacebookCredentials
from .registered import (
    REGISTERED_STORAGES, AzureStorage, FTPStorage, GCSStorage, RegisteredStorage, S3Storage, SFTPStorage,
)
from .storage import OutputStore, StorageBlock
from .vimeo import VimeoCredentials
from .youtube import YouTubeCredentials

BLOCKS = (StorageBlock, AccountBlock, S3Credentials, YouTubeCredentials, VimeoCredentials, FacebookCredentials,
          *REGISTERED_STORAGES)

__all__ = ["AccountBlock", "AzureStorage", "BLOCKS", "FTPStorage", "FacebookCredentials", "GCSStorage", "OutputStore",
           "RegisteredStorage", "S3Credentials", "S3Storage", "SFTPStorage", "StorageBlock", "VimeoCredentials",
           "YouTubeCredentials"]

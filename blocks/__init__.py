"""Prefect blocks of dragonflow: storage systems, accounts and service credentials."""

from .account import AccountBlock
from .credentials import S3Credentials
from .storage import OutputStore, StorageBlock

BLOCKS = (StorageBlock, AccountBlock, S3Credentials)

__all__ = ["AccountBlock", "BLOCKS", "OutputStore", "S3Credentials", "StorageBlock"]

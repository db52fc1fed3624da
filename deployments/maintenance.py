"""Scheduled maintenance flows (run by the same workers as the tasks)."""

from __future__ import annotations

import asyncio
import time

from prefect import flow, get_run_logger

from blocks.storage import STORE_NAMES, StorageBlock, load_store


def _expire(store: StorageBlock) -> tuple[int, int]:
    """Delete files older than the store's ``expire_days``; (files deleted, bytes freed)."""
    cutoff = time.time() - store.expire_days * 86400
    root = store.object_path("")
    deleted = freed = 0
    if not store.fs.exists(root):
        return 0, 0
    for path, info in store.fs.find(root, detail=True).items():
        modified = info.get("mtime") or info.get("LastModified")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else modified
        if stamp is not None and stamp < cutoff:
            store.fs.rm_file(path)
            deleted += 1
            freed += int(info.get("size") or 0)
    return deleted, freed


@flow(name="expire-files", persist_result=False)
async def expire_files() -> dict[str, int]:
    """Delete output files past their storage system's lifetime (volatile: 7 days)."""
    logger = get_run_logger()
    summary: dict[str, int] = {}
    for name in STORE_NAMES:
        store = await load_store(name)
        if store.expire_days <= 0:
            continue
        deleted, freed = await asyncio.to_thread(_expire, store)
        logger.info("%s: deleted %d files older than %d days (%d bytes)", name, deleted, store.expire_days, freed)
        summary[name] = deleted
    return summary

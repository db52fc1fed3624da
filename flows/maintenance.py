"""Scheduled maintenance: the `expire-files` flow (run hourly by the same workers as the tasks)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client

from blocks.account import load_accounts
from blocks.storage import STORE_NAMES, StorageBlock, load_store
from flows.contract import secrets


def expire(store: StorageBlock, relative_dir: str, days: int) -> tuple[int, int]:
    """Delete files under ``relative_dir`` older than ``days``; (files deleted, bytes freed)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    old = [f for f in store.files(relative_dir) if f.modified < cutoff]
    for stored in old:
        store.remove(stored.path)
    return len(old), sum(f.size for f in old)


@flow(name="expire-files", persist_result=False)
async def expire_files() -> dict[str, int]:
    """Delete output files past their lifetime (a storage system's ``expire_days``,
    volatile: 7 days, and each account's persistent-file expiration) and per-run secret
    blocks older than a day."""
    logger = get_run_logger()
    summary: dict[str, int] = {}
    jobs: list[tuple[str, StorageBlock, str, int]] = []
    for name in STORE_NAMES:
        store = await load_store(name)
        if store.expire_days > 0:
            jobs.append((name, store, "", store.expire_days))
    async with get_client() as client:
        accounts = await load_accounts(client)
    persistent = await load_store("persistent")
    jobs += [
        (f"persistent/{a.name}", persistent, a.name, a.expiration_days) for a in accounts if a.expiration_days > 0
    ]
    for label, store, relative_dir, days in jobs:
        deleted, freed = await asyncio.to_thread(expire, store, relative_dir, days)
        logger.info("%s: deleted %d files older than %d days (%d bytes)", label, deleted, days, freed)
        summary[label] = deleted
    summary["run secrets"] = await secrets.sweep()
    logger.info("deleted %d per-run secret blocks left by runs that never ended", summary["run secrets"])
    return summary

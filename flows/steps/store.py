"""Store an output file through the task's ``task_store`` block and return its URL."""

from __future__ import annotations

from pathlib import Path

from blocks.storage import load_store
from flows.runtime import current_run


async def store(path: Path, name: str) -> str:
    """Save ``path`` as output ``name`` of the running task; returns the public URL.

    Files land at ``<account>/<KEY>/<name><suffix>`` in the chosen storage system.
    """
    run = current_run()
    block = await load_store(run.params.task_store.type)
    return await block.put(path, f"{run.account}/{run.key}/{name}{path.suffix}")

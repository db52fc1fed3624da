"""``store``: save an output file in an output store and return its public URL.

The store is chosen by ``task_store.type`` through ``RESOLVERS``, the one mapping from a
type to the ``OutputStore`` serving it: persistent and volatile are the storage block
documents of those names. A new store type (s3_signed, youtube) is one resolver here and
one value of ``TaskStore.type``. ``store`` is a step (task run ``store output.jpg``);
outside a flow call ``store.fn(path, name, relative=..., to=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

from blocks.storage import OutputStore, load_store
from flows.params import TaskStore
from flows.runtime import current_run
from flows.steps.step import step, step_log


async def _storage_block(task_store: TaskStore) -> OutputStore:
    return await load_store(task_store.type)


RESOLVERS: dict[str, Callable[[TaskStore], Awaitable[OutputStore]]] = {
    "persistent": _storage_block,
    "volatile": _storage_block,
}


async def resolve_store(task_store: TaskStore) -> OutputStore:
    """The output store a task's ``task_store`` names."""
    return await RESOLVERS[task_store.type](task_store)


def _run_name(parameters: dict[str, Any]) -> str:
    return f"store {parameters['name']}{Path(parameters['path']).suffix}"


@step("store", run_name=_run_name)
async def store(path: Path, name: str, *, relative: str | None = None, to: OutputStore | None = None) -> str:
    """Save ``path`` as output ``name``; returns its public URL.

    By default (inside a task flow) the file goes to ``<account>/<KEY>/<name><suffix>`` in
    the task's ``task_store``; a caller outside a task flow, or one with its own layout
    (VimQu's ``target_path``), passes ``relative`` and, for another store than the task's
    (persistent outside a task flow), ``to``.
    """
    if relative is None:
        run = current_run()
        relative = f"{run.account}/{run.key}/{name}{Path(path).suffix}"
    if to is None:
        try:
            task_store = current_run().params.task_store
        except LookupError:  # a direct call outside a task flow
            task_store = TaskStore()
        to = await resolve_store(task_store)
    url = await to.put(Path(path), relative)
    step_log("stored %s as %s", Path(path).name, url)
    return url

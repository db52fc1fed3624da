"""One shared poller of flow runs for every open stream and blocking call.

However many clients wait, the API reads the watched runs from Prefect once per
interval (two queries for all of them) and hands changes to each subscriber.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import Artifact, FlowRun

from api.status import read_runs

logger = logging.getLogger("dragonflow.watcher")
Snapshot = tuple[FlowRun, list[Artifact]]


def fingerprint(run: FlowRun, artifacts: list[Artifact]) -> str:
    """What a client can see change: the state and the result/progress artifacts."""
    state = run.state
    return json.dumps(
        [
            state.type.value if state else None,
            state.name if state else None,
            str(run.start_time),
            [[str(a.id), a.data] for a in artifacts],
        ],
        default=str,
    )


class RunWatcher:
    """Polls the union of watched runs every ``interval`` seconds while anyone watches."""

    def __init__(self, client: PrefectClient, interval: float = 0.05):
        self._client = client
        self._interval = interval
        self._queues: dict[UUID, set[asyncio.Queue[Snapshot]]] = {}
        self._seen: dict[UUID, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not self._queues:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.poll_once()
            except Exception as exc:  # Prefect briefly unreachable: keep watching
                logger.warning("watcher poll failed: %s", exc)
            await asyncio.sleep(self._interval)

    async def poll_once(self) -> None:
        found = await read_runs(self._client, list(self._queues))
        for run_id, (run, artifacts) in found.items():
            mark = fingerprint(run, artifacts)
            if self._seen.get(run_id) != mark:
                self._seen[run_id] = mark
                for queue in self._queues.get(run_id, ()):
                    queue.put_nowait((run, artifacts))

    @asynccontextmanager
    async def subscribe(self, run_ids: list[UUID]) -> AsyncIterator[asyncio.Queue[Snapshot]]:
        """A queue receiving each change of ``run_ids`` (starting with their current state)."""
        queue: asyncio.Queue[Snapshot] = asyncio.Queue()
        for run_id in run_ids:
            self._queues.setdefault(run_id, set()).add(queue)
            self._seen.pop(run_id, None)
        self._wake.set()
        try:
            yield queue
        finally:
            for run_id in run_ids:
                subscribers = self._queues.get(run_id)
                if subscribers is not None:
                    subscribers.discard(queue)
                    if not subscribers:
                        del self._queues[run_id]
                        self._seen.pop(run_id, None)

"""One shared poller of flow runs for every open stream, blocking call and status read.

However many clients wait, the API reads the watched runs from Prefect once per
interval (two queries for all of them) and hands changes to each subscriber; status
reads are answered from the same fresh snapshots, so many clients asking about the same
tasks cost the Prefect server one read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
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
    """Polls the union of watched runs while anyone watches: every ``interval`` seconds
    while they change, backing off to ``max_interval`` while they run quietly."""

    def __init__(
        self, client: PrefectClient, interval: float = 0.05, max_interval: float = 0.5, max_age: float = 0.1
    ):
        self._client = client
        self._interval = interval
        self._max_interval = max_interval
        self._max_age = max_age
        self._queues: dict[UUID, set[asyncio.Queue[Snapshot]]] = {}
        self._seen: dict[UUID, str] = {}
        self._latest: dict[UUID, tuple[float, Snapshot]] = {}
        self._read_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = self._interval
        while True:
            self._wake.clear()
            if not self._queues:
                await self._wake.wait()
                continue
            try:
                changed = await self.poll_once()
            except Exception as exc:  # Prefect briefly unreachable: keep watching
                logger.warning("watcher poll failed: %s", exc)
                changed = 0
            # Quick while things change; slower while long tasks run quietly.
            delay = self._interval if changed else min(delay * 1.5, self._max_interval)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                delay = self._interval  # a new subscriber: look now
            except asyncio.TimeoutError:
                pass

    async def _read(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        found = await read_runs(self._client, run_ids)
        now = time.monotonic()
        for run_id, snapshot in found.items():
            self._latest[run_id] = (now, snapshot)
        for run_id in [r for r, (t, _) in self._latest.items() if now - t > 60 and r not in self._queues]:
            del self._latest[run_id]
        return found

    def _fresh(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        now = time.monotonic()
        return {
            r: self._latest[r][1]
            for r in run_ids
            if r in self._latest and now - self._latest[r][0] <= self._max_age
        }

    async def current(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        """Snapshots no older than ``max_age`` of the runs that exist among ``run_ids``."""
        found = self._fresh(run_ids)
        if len(found) < len(run_ids):
            async with self._read_lock:  # concurrent askers of the same runs share one read
                found = self._fresh(run_ids)
                missing = [r for r in run_ids if r not in found]
                if missing:
                    found.update(await self._read(missing))
        return found

    async def poll_once(self) -> int:
        """Read the watched runs once and hand out what changed; how many changed."""
        found = await self._read(list(self._queues))
        changed = 0
        for run_id, (run, artifacts) in found.items():
            mark = fingerprint(run, artifacts)
            if self._seen.get(run_id) != mark:
                self._seen[run_id] = mark
                changed += 1
                for queue in self._queues.get(run_id, ()):
                    queue.put_nowait((run, artifacts))
        return changed

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

"""One shared view of flow runs for every open stream, blocking call and status read.

However many clients wait, the API reads the watched runs from Prefect in one go (two
queries for all of them) and hands changes to each subscriber; status reads are answered
from the same snapshots, so many clients asking about the same tasks cost the Prefect
server one read.

Prefect's flow-run state events (its events websocket) say when a run changed: a
snapshot older than the reported state is dropped and the run's subscribers are served
at once, so a change is seen without polling delay, and a snapshot of a run that is not
running stays good until an event says otherwise (for ``trust_age`` at most, in case an
event was missed). Running runs are re-read after ``max_age``: their progress and
partial results are artifacts, which have no events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter

from flows.contract.runs import RunView, read_runs

logger = logging.getLogger("dragonflow.watcher")
Snapshot = RunView
RUN_RESOURCE = "prefect.flow-run."
HEARTBEAT = "prefect.flow-run.heartbeat"
FORGET_AFTER = 60.0


def fingerprint(view: RunView) -> str:
    """What a client can see change: the state and the result/progress artifacts."""
    run, artifacts = view.run, view.artifacts
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
    """Reads the union of watched runs when Prefect reports a change, and every
    ``interval`` seconds while they change, backing off to ``max_interval`` while they
    run quietly."""

    def __init__(
        self,
        client: PrefectClient,
        interval: float = 0.05,
        max_interval: float = 0.5,
        max_age: float = 0.3,
        trust_age: float = 2.0,
    ):
        self._client = client
        self._interval = interval
        self._max_interval = max_interval
        self._max_age = max_age
        self._trust_age = trust_age
        self._queues: dict[UUID, set[asyncio.Queue[Snapshot]]] = {}
        self._seen: dict[UUID, str] = {}
        self._latest: dict[UUID, tuple[float, Snapshot]] = {}
        self._changes: dict[UUID, tuple[float, datetime]] = {}  # newest state event: (seen, occurred)
        self._events_live = False
        self._read_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        """Follow Prefect's flow-run state events for as long as the API runs."""
        # Heartbeats are left out by the server: a subscriber's queue drops events silently
        # past 256, and thousands of running runs' beats would crowd out state changes.
        changes = EventFilter(event=EventNameFilter(prefix=[RUN_RESOURCE], exclude_name=[HEARTBEAT]))
        while True:
            try:
                async with get_events_subscriber(filter=changes, reconnection_attempts=1_000_000) as events:
                    self._events_live = True
                    async for event in events:
                        self.changed(UUID(event.resource.id.removeprefix(RUN_RESOURCE)), event.occurred)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Prefect down: snapshots expire by age until it is back
                logger.warning("Prefect events unavailable: %s", exc)
            finally:
                self._events_live = False
            await asyncio.sleep(1.0)

    def changed(self, run_id: UUID, occurred: datetime) -> None:
        """Prefect says ``run_id`` entered a state at ``occurred``: forget an older snapshot
        and serve the run's subscribers now."""
        known = self._changes.get(run_id)
        if known is None or occurred > known[1]:
            self._changes[run_id] = (time.monotonic(), occurred)
        if run_id in self._latest and not self._up_to_date(self._latest[run_id][1]):
            del self._latest[run_id]
        if run_id in self._queues:
            self._wake.set()

    def _up_to_date(self, snapshot: Snapshot) -> bool:
        """False when Prefect reported a state newer than the snapshot's."""
        run = snapshot.run
        known = self._changes.get(run.id)
        return known is None or (run.state is not None and run.state.timestamp >= known[1])

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
                delay = self._interval  # a change or a new subscriber: look now
            except asyncio.TimeoutError:
                pass

    def remember(self, runs: list[FlowRun]) -> None:
        """Keep snapshots of runs Prefect just answered with (created: no artifacts yet)."""
        now = time.monotonic()
        for run in runs:
            self._keep(run.id, RunView(run), now)

    def _keep(self, run_id: UUID, snapshot: Snapshot, taken: float) -> None:
        if self._up_to_date(snapshot):
            self._latest[run_id] = (taken, snapshot)

    async def _read(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        taken = time.monotonic()
        found = await read_runs(self._client, run_ids)
        for run_id, snapshot in found.items():
            self._keep(run_id, snapshot, taken)
        now = time.monotonic()
        for run_id in [r for r, (t, _) in self._latest.items() if now - t > FORGET_AFTER and r not in self._queues]:
            del self._latest[run_id]
        for run_id in [r for r, (t, _) in self._changes.items() if now - t > FORGET_AFTER]:
            del self._changes[run_id]
        return found

    def _usable(self, taken: float, snapshot: Snapshot, now: float) -> bool:
        """A running run's progress can change silently; other changes come as events."""
        run = snapshot.run
        running = run.state is None or run.state.type == StateType.RUNNING
        limit = self._max_age if running or not self._events_live else self._trust_age
        return now - taken <= limit

    def _fresh(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        now = time.monotonic()
        return {
            r: self._latest[r][1]
            for r in run_ids
            if r in self._latest and self._usable(*self._latest[r], now)
        }

    async def current(self, run_ids: list[UUID]) -> dict[UUID, Snapshot]:
        """Up-to-date snapshots of the runs that exist among ``run_ids``."""
        found = self._fresh(run_ids)
        if len(found) < len(run_ids):
            async with self._read_lock:  # concurrent askers of the same runs share one read
                found = self._fresh(run_ids)
                missing = [r for r in run_ids if r not in found]
                if missing:
                    found.update(await self._read(missing))
        return found

    async def poll_once(self) -> int:
        """Hand out what changed among the watched runs (reading only those whose snapshot
        is stale: running ones, and any a state event made out of date); how many changed."""
        found = await self.current(list(self._queues))
        changed = 0
        for run_id, view in found.items():
            mark = fingerprint(view)
            if self._seen.get(run_id) != mark:
                self._seen[run_id] = mark
                changed += 1
                for queue in self._queues.get(run_id, ()):
                    queue.put_nowait(view)
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

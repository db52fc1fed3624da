"""Keep the service's processes running: a child that exits is started again after a
back-off (1 s, doubling up to ``MAX_BACKOFF`` while it keeps dying within
``STABLE_SECONDS``), so a crash-looping worker never takes the rest down."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0  # a child up this long starts over from the shortest back-off


@dataclass
class Child:
    """One supervised process: how to start it, and its current incarnation."""

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 0.5
    restart_at: float | None = None

    def launch(self) -> None:
        self.process, self.started_at, self.restart_at = self.start(), time.monotonic(), None


class Supervisor:
    """The children of ``dragonflow up``, restarted when they exit, stopped newest first."""

    def __init__(self, log: Callable[[str], Any]):
        self.children: list[Child] = []
        self.log = log

    def add(self, name: str, start: Callable[[], subprocess.Popen]) -> Child:
        child = Child(name, start)
        child.launch()
        self.children.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen, start: Callable[[], subprocess.Popen]) -> Child:
        """Supervise ``process``, already started by ``start``."""
        child = Child(name, start, process, time.monotonic())
        self.children.append(child)
        return child

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [child.process for child in self.children if child.process is not None]

    def check(self) -> None:
        """Restart what exited, once its back-off has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and child.process is not None and child.process.poll() is not None:
                child.backoff = 1.0 if now - child.started_at > STABLE_SECONDS else min(2 * child.backoff, MAX_BACKOFF)
                child.restart_at = now + child.backoff
                self.log(f"{child.name} exited ({child.process.returncode}): starting it again in {child.backoff:g} s")
            elif child.restart_at is not None and now >= child.restart_at:
                child.launch()

    def run_forever(self, tick: float = 0.5) -> None:
        while True:
            self.check()
            time.sleep(tick)

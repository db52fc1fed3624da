"""The service running in a ``DRAGONFLOW_HOME``, as its owner records it, so that every
CLI command finds it instead of guessing a port.

``service.json`` (mode 600: it holds the Prefect auth string) is written by the process
that runs a Prefect server over the home's database or the whole service: ``dragonflow up``
(``topology``: ``sqlite``, ``scale`` or ``external`` when PREFECT_API_URL points elsewhere)
or a CLI command's temporary SQLite server (``temporary``). It is created exclusively (one
owner per home; a file whose pid is gone is stale and replaced) and removed when its owner
stops. ``topology`` (plain text) records what the last ``up`` ran, and stays.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from deployments.server import is_healthy

STATE = "service.json"
TOPOLOGY = "topology"
WAIT_SECONDS = 60.0  # how long a command waits for a service that is starting (or restarting Prefect)


class ServiceError(RuntimeError):
    """No usable service for this home; the message says what to do."""


def claim(home: Path, state: dict[str, Any]) -> None:
    """Record this process (``os.getpid()``) as the home's owner with ``state``;
    ServiceError if another live process owns it."""
    record = {**state, "pid": os.getpid()}
    path, draft = home / STATE, home / f".{STATE}.{os.getpid()}"
    for _ in range(2):
        _write_private(draft, record)
        try:
            os.link(draft, path)  # atomic, and fails when the file exists
            return
        except FileExistsError:
            current = running(home)
            if current:
                raise ServiceError(f"dragonflow ({current['topology']}, pid {current['pid']}, API"
                                   f" {current.get('api') or 'none'}) already runs in DRAGONFLOW_HOME={home}:"
                                   " stop it first, or use another DRAGONFLOW_HOME") from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
        finally:
            draft.unlink(missing_ok=True)
    raise ServiceError(f"could not claim {path}: another process keeps writing it")


def update(home: Path, **changes: Any) -> None:
    """Add ``changes`` (those not None) to the record this process owns."""
    record = {**json.loads((home / STATE).read_text()), **{k: v for k, v in changes.items() if v is not None}}
    draft = home / f".{STATE}.{os.getpid()}"
    _write_private(draft, record)
    os.replace(draft, home / STATE)


def release(home: Path) -> None:
    """Remove the record if this process owns it."""
    state = _read(home)
    if state and state.get("pid") == os.getpid():
        (home / STATE).unlink(missing_ok=True)


def running(home: Path) -> dict[str, Any] | None:
    """The home's record while its owner's process is alive, else None."""
    state = _read(home)
    return state if state and _alive(state.get("pid")) else None


def record_topology(home: Path, topology: str) -> None:
    (home / TOPOLOGY).write_text(topology + "\n")


def last_topology(home: Path) -> str | None:
    """What the last ``up`` ran in ``home`` (``scale`` for a home made before this was
    recorded that holds the scale tier's auth file), None when ``up`` never ran there."""
    path = home / TOPOLOGY
    if path.exists():
        return path.read_text().strip()
    return "scale" if (home / "prefect-auth").exists() else None


def prefect_client(home: Path, state: dict[str, Any]) -> dict[str, str]:
    """Client settings (PREFECT_API_URL, PREFECT_API_AUTH_STRING) of the first of the
    running service's Prefect APIs that answers, waiting up to ``WAIT_SECONDS`` while it
    starts; ServiceError if none does."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        for url in state.get("prefect_apis", []):
            if is_healthy(url):
                auth = state.get("prefect_auth")
                return {"PREFECT_API_URL": url, **({"PREFECT_API_AUTH_STRING": auth} if auth else {})}
        if time.monotonic() > deadline or not _alive(state["pid"]):
            urls = ", ".join(state.get("prefect_apis", [])) or "none yet"
            raise ServiceError(f"the dragonflow service of DRAGONFLOW_HOME={home} (pid {state['pid']}) has no"
                               f" Prefect API answering (recorded: {urls}): check its log, or set PREFECT_API_URL")
        time.sleep(0.5)
        state = _read(home) or state


def _read(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((home / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_private(path: Path, record: dict[str, Any]) -> None:
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(record))


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True

"""The Stupeflix status object (seed 000 "Tasks statuses format"), v1 and v2: pure renderers.

Phases are named ``queued``/``executing``/``success``/``error``; v2 puts an error under
``error``, v1 under ``result`` (seeds 000 and 002).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from flows.contract.keys import key_for
from flows.contract.runs import INVALID_PARAMETERS, Phase, RunView, task_name_of

STATUS_NAMES = {
    Phase.QUEUED: "queued",
    Phase.RUNNING: "executing",
    Phase.COMPLETED: "success",
    Phase.FAILED: "error",
    Phase.CANCELLED: "error",
}
UNKNOWN_KEY = "unknown task key"


def error_key(version: str) -> str:
    """Where a status carries its error: ``result`` in v1, ``error`` in v2."""
    return "result" if version == "v1" else "error"


def status_name(run: FlowRun) -> str:
    """queued / executing / success / error for a flow run's current state."""
    return STATUS_NAMES[Phase.of(run)]


def error_value(run: FlowRun) -> Any:
    """The status ``error``: a message, or ``{"parameters": {...}}`` for invalid parameters."""
    state = run.state
    message = (state.message if state else None) or ""
    if state is not None and state.name == INVALID_PARAMETERS:
        return json.loads(message)
    if state is not None and state.type == StateType.CANCELLED:
        return f"task was cancelled{': ' + message if message else ''}"
    return message or f"task ended in state {state.name if state else 'unknown'}"


def events_of(run: FlowRun, name: str) -> dict[str, str | None]:
    """``queued``, ``started`` and ``completed`` times, in chronological order (a run created
    already ended, as a refused task is, has its state stamped before the row exists)."""
    ended = name in ("success", "error")
    completed: datetime | None = None
    if ended:
        completed = run.end_time or (run.state.timestamp if run.state else None)
    started = run.start_time if name != "queued" else None
    times = [t for t in (run.created, started, completed) if t is not None]
    queued = min(times) if times else None
    events: dict[str, str | None] = {"queued": queued.isoformat() if queued else None}
    if started is not None:
        events["started"] = max(started, queued).isoformat()
    if completed is not None:
        events["completed"] = max(times).isoformat()
    return events


def stupeflix_status(
    view: RunView,
    *,
    version: str = "v2",
    details: bool = False,
    ui_url: str | None = None,
) -> dict[str, Any]:
    """The status object a client sees for a run."""
    run = view.run
    name = status_name(run)
    result = view.result
    status: dict[str, Any] = {
        "status": name,
        "key": key_for(run.id),
        "progress": None if name in ("success", "error") else view.progress,
        "events": events_of(run, name),
    }
    if name == "success":
        status["result"] = result
    elif name == "error":
        status[error_key(version)] = error_value(run)
    elif result is not None:
        status["result"] = result
    if details:
        params = run.parameters.get("params")
        status["details"] = {
            "task_name": task_name_of(run),
            "parameters": params if params is not None else run.parameters,
            "storage": (params or {}).get("task_store") or {"type": "persistent"},
            "state": run.state.name if run.state else None,
            "prefect_ui": ui_url,
        }
    return status


def unknown_status(key: str, version: str) -> dict[str, Any]:
    """The status of a key that does not decode or names no task of the account."""
    return {"status": "error", "key": key, "progress": None, "events": {}, error_key(version): UNKNOWN_KEY}

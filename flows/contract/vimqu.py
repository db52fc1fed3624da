"""The VimQu Common Task Result Object (seed 003) from a task's run: a pure renderer.

A VimQu task is one flow run (its id is the task id) whose parameters are
``{"params": {...}, "account": NAME}`` with ``params``::

    {"input": {"source_type": "url" | "storage", "storage_id": ID | None, "path": STR},
     "outputs": [{"id": UUID, "storage_id": ID, "storage": {"id", "name", "driver"},
                  "target_path": STR, "type": "thumbnail" | "video" | "hls" | "dash",
                  "type_specific_config": {...}, "reference_id": ANY}],
     "webhook_url": URL | None, "webhook_per_output": BOOL}

(the API snapshots each storage's id, name and driver at creation). The flow reports each
output as it ends in its result artifact (partial while running, final at the end)::

    {"outputs": {OUTPUT_ID: {"status": "completed" | "failed", "files": [{"path", "uploaded_at"}],
                             "message": STR | None}}}

Task status: ``active`` (queued), ``processing``, ``completed``, ``canceled``, ``failed`` —
failed also when any output failed, with a ``message`` naming the output, its storage and why;
the other outputs keep their files.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flows.contract.runs import Phase, RunView

STATUS_NAMES = {
    Phase.QUEUED: "active",
    Phase.RUNNING: "processing",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "canceled",
}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def utc_text(moment: datetime | None) -> str | None:
    """A time as the seed writes it: UTC, ``2022-01-06 10:55:31``."""
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT) if moment else None


def output_failure(output: dict[str, Any], message: str | None) -> str:
    """What failed, for the task's ``message``: which output, which storage, why."""
    storage = output.get("storage") or {}
    where = f"storage {storage.get('name') or output.get('storage_id')!r} ({storage.get('driver', '?')})"
    return f"output {output['id']} ({output.get('type')}) to {where}: {message or 'failed'}"


def vimqu_task(view: RunView) -> dict[str, Any]:
    """The ``data`` of the Common Task Result Object for a VimQu task's run."""
    run = view.run
    params = run.parameters.get("params") or {}
    reported = (view.result or {}).get("outputs") or {}
    phase = view.phase
    outputs, failures = [], []
    for output in params.get("outputs") or []:
        done = reported.get(output["id"]) or {}
        status = done.get("status") or ("canceled" if phase == Phase.CANCELLED else
                                        "failed" if phase == Phase.FAILED else STATUS_NAMES[phase])
        entry = {
            "id": output["id"],
            "reference_id": output.get("reference_id"),
            "storage": output.get("storage") or {"id": output.get("storage_id")},
            "target_path": output.get("target_path"),
            "type": output.get("type"),
            "status": status,
            "files": done.get("files") or [],
        }
        if done.get("message"):
            entry["message"] = done["message"]
        if done.get("status") == "failed":
            failures.append(output_failure(output, done.get("message")))
        outputs.append(entry)
    status = STATUS_NAMES[phase]
    data: dict[str, Any] = {"id": str(run.id), "created_at": utc_text(run.created), "status": status}
    if phase == Phase.COMPLETED and failures:
        data["status"] = "failed"
    if data["status"] in ("failed", "canceled"):
        state_message = run.state.message if run.state and phase != Phase.COMPLETED else None
        data["message"] = "; ".join(failures) or state_message or f"task {data['status']}"
    data["outputs"] = outputs
    return data

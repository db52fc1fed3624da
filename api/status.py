"""Status objects (seed 000 "Tasks statuses format") from flow runs and their artifacts.

The single place that maps Prefect states to ``queued``/``executing``/``success``/``error``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, StateType

from api.keys import key_for

RESULT_ARTIFACT = "result"
PROGRESS_ARTIFACT = "progress"
WRAPPED_RESULT = "Task result (value)"
INVALID_PARAMETERS = "InvalidParameters"
ACCOUNT_TAG = "account:"
MAX_READ = 200  # Prefect's largest page
READ_CHUNK = 50  # runs per read: their result, partial and progress artifacts fit one page

_QUEUED = {StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED}
_EXECUTING = {StateType.RUNNING, StateType.CANCELLING}
_ERROR = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def status_name(run: FlowRun) -> str:
    """queued / executing / success / error for a flow run's current state."""
    state = run.state
    if state is None:
        return "queued"
    if state.type == StateType.SCHEDULED and (state.name == "AwaitingRetry" or run.run_count > 0):
        return "executing"
    if state.type in _QUEUED:
        return "queued"
    if state.type in _EXECUTING:
        return "executing"
    if state.type == StateType.COMPLETED:
        return "success"
    return "error"


def error_value(run: FlowRun) -> Any:
    """The status ``error``: a message, or ``{"parameters": {...}}`` for invalid parameters."""
    state = run.state
    message = (state.message if state else None) or ""
    if state is not None and state.name == INVALID_PARAMETERS:
        return json.loads(message)
    if state is not None and state.type == StateType.CANCELLED:
        return f"task was cancelled{': ' + message if message else ''}"
    return message or f"task ended in state {state.name if state else 'unknown'}"


def account_of(run: FlowRun) -> str | None:
    """The account a run belongs to (from its ``account:NAME`` tag)."""
    for tag in run.tags:
        if tag.startswith(ACCOUNT_TAG):
            return tag[len(ACCOUNT_TAG):]
    return None


def task_name_of(run: FlowRun) -> str | None:
    """The task name a run was created for (the tag that is not the account tag)."""
    return next((t for t in run.tags if not t.startswith(ACCOUNT_TAG)), None)


def result_value(artifact: Artifact) -> Any:
    """A result artifact's value (scalars are stored wrapped so the UI shows key/values)."""
    if artifact.description == WRAPPED_RESULT and isinstance(artifact.data, dict):
        return artifact.data.get("value")
    return artifact.data


def build_status(
    run: FlowRun,
    artifacts: Iterable[Artifact] = (),
    *,
    version: str = "v2",
    details: bool = False,
    ui_url: str | None = None,
) -> dict[str, Any]:
    """The status object a client sees for ``run``."""
    name = status_name(run)
    result = progress = None
    for artifact in artifacts:
        if artifact.type == RESULT_ARTIFACT:
            result = result_value(artifact)
        elif artifact.type == PROGRESS_ARTIFACT:
            progress = artifact.data
    events = {"queued": run.created.isoformat() if run.created else None}
    if run.start_time and name != "queued":
        events["started"] = run.start_time.isoformat()
    if name in ("success", "error") and run.end_time:
        events["completed"] = run.end_time.isoformat()
    elif name in ("success", "error") and run.state:
        events["completed"] = run.state.timestamp.isoformat()
    status: dict[str, Any] = {
        "status": name,
        "key": key_for(run.id),
        "progress": None if name in ("success", "error") else progress,
        "events": events,
    }
    if name == "success":
        status["result"] = result
    elif name == "error":
        status["result" if version == "v1" else "error"] = error_value(run)
    elif result is not None:
        status["result"] = result
    if details:
        status["details"] = {
            "task_name": task_name_of(run),
            "parameters": run.parameters.get("params", run.parameters),
            "storage": (run.parameters.get("params") or {}).get("task_store") or {"type": "persistent"},
            "state": run.state.name if run.state else None,
            "prefect_ui": ui_url,
        }
    return status


async def read_runs(client: PrefectClient, run_ids: list[UUID]) -> dict[UUID, tuple[FlowRun, list[Artifact]]]:
    """Flow runs and their result/progress artifacts: two API calls per ``READ_CHUNK`` runs
    (Prefect answers at most 200 objects per call)."""
    found: dict[UUID, tuple[FlowRun, list[Artifact]]] = {}
    for start in range(0, len(run_ids), READ_CHUNK):
        chunk = run_ids[start : start + READ_CHUNK]
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
        if not runs:
            continue
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs]),
                type=ArtifactFilterType(any_=[RESULT_ARTIFACT, PROGRESS_ARTIFACT]),
            ),
            limit=MAX_READ,
        )
        found.update({r.id: (r, []) for r in runs})
        for artifact in sorted(artifacts, key=lambda a: a.created):
            if artifact.flow_run_id in found:
                found[artifact.flow_run_id][1].append(artifact)
    return found

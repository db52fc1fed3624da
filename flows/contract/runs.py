"""What a task's flow run carries, and its neutral phase.

A run is tagged with its task name (``task:NAME``), account (``account:NAME``) and the
surface it was created on (``surface:v1``); its result and progress are artifacts, so any
API process can answer for any run. ``Phase`` is the one mapping of Prefect states; each
wire format names the phases its own way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from uuid import UUID

from prefect.artifacts import Artifact as ArtifactMaker
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, StateType
from prefect.states import Running
from pydantic import BaseModel

RESULT_ARTIFACT = "result"
PROGRESS_ARTIFACT = "progress"
WRAPPED_RESULT = "Task result (value)"
PARTIAL_RESULT = "Partial result"
INVALID_PARAMETERS = "InvalidParameters"
ACCOUNT_TAG = "account:"
TASK_TAG = "task:"
SURFACE_TAG = "surface:"
ERRBACK_TAG = "errback"
"""Tag of runs that have a ``url_errback`` (the errback automation follows only these)."""
MAX_READ = 200  # Prefect's largest page
READ_CHUNK = 50  # runs per read: their result, partial and progress artifacts fit one page


class Phase(str, Enum):
    """Where a task is, whatever surface shows it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)

    @classmethod
    def of(cls, run: FlowRun) -> "Phase":
        """The phase of a run's current state. A run waiting to retry (AwaitingRetry, or
        Scheduled after it has run) and a Cancelling run are still running; Late is queued."""
        state = run.state
        if state is None:
            return cls.QUEUED
        kind = state.type
        if kind == StateType.SCHEDULED and (state.name == "AwaitingRetry" or run.run_count > 0):
            return cls.RUNNING
        if kind in (StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED):
            return cls.QUEUED
        if kind in (StateType.RUNNING, StateType.CANCELLING):
            return cls.RUNNING
        if kind == StateType.COMPLETED:
            return cls.COMPLETED
        if kind == StateType.CANCELLED:
            return cls.CANCELLED
        return cls.FAILED


@dataclass
class RunView:
    """A flow run with its result and progress artifacts (oldest first)."""

    run: FlowRun
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def phase(self) -> Phase:
        return Phase.of(self.run)

    @property
    def result(self) -> Any:
        """The newest result (or partial result) artifact's value, or None."""
        value = None
        for artifact in self.artifacts:
            if artifact.type == RESULT_ARTIFACT:
                value = result_value(artifact)
        return value

    def partials_after(self, shown: set[UUID]) -> list["RunView"]:
        """The run as it stood at each partial result not in ``shown`` and since replaced
        by a newer result (oldest first): running, with the artifacts up to that one. A
        stream replays them so a fast task's ``duration`` partial is not skipped."""
        results = [a for a in self.artifacts if a.type == RESULT_ARTIFACT]
        missed = [a for a in results[:-1] if a.id not in shown and a.description == PARTIAL_RESULT]
        if not missed:
            return []
        began = {"timestamp": self.run.start_time} if self.run.start_time else {}
        running = self.run.model_copy(update={"state": Running(**began)})
        return [RunView(running, self.artifacts[: self.artifacts.index(a) + 1]) for a in missed]

    def result_ids(self) -> set[UUID]:
        """The ids of the run's result artifacts (partial and final)."""
        return {a.id for a in self.artifacts if a.type == RESULT_ARTIFACT}

    @property
    def progress(self) -> Any:
        value = None
        for artifact in self.artifacts:
            if artifact.type == PROGRESS_ARTIFACT:
                value = artifact.data
        return value


def tag_value(run: FlowRun, prefix: str) -> str | None:
    """The value of the run's ``prefix``-tag (``account:``, ``task:``, ``surface:``)."""
    return next((t[len(prefix):] for t in sorted(run.tags) if t.startswith(prefix)), None)


def account_of(run: FlowRun) -> str | None:
    """The account a run belongs to."""
    return tag_value(run, ACCOUNT_TAG)


def task_name_of(run: FlowRun) -> str | None:
    """The task name a run was created for: its ``task:`` tag (runs created before that
    tag existed: their one tag without a colon, the deployment's tag)."""
    return tag_value(run, TASK_TAG) or next((t for t in sorted(run.tags) if ":" not in t), None)


def surface_of(run: FlowRun) -> str:
    """The surface (``v1``, ``v2``, ``vimqu``) the run was created on; v2 by default."""
    return tag_value(run, SURFACE_TAG) or "v2"


def run_tags(task_name: str, account: str, surface: str, *, errback: bool = False) -> list[str]:
    """The tags a task's run is created with (``errback`` when it has a ``url_errback``)."""
    tags = [task_name, TASK_TAG + task_name, ACCOUNT_TAG + account, SURFACE_TAG + surface]
    return tags + [ERRBACK_TAG] if errback else tags


def result_value(artifact: Artifact) -> Any:
    """A result artifact's value (scalars are stored wrapped so the UI shows key/values)."""
    if artifact.description == WRAPPED_RESULT and isinstance(artifact.data, dict):
        return artifact.data.get("value")
    return artifact.data


def as_json(value: Any) -> Any:
    """A result as plain JSON data."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


class ResultArtifact(ArtifactMaker):
    """A ``result`` artifact whose data is stored as JSON (the UI shows its keys/values)."""

    async def aformat(self) -> Any:
        return self.data


async def record_result(value: Any, description: str = "Task result") -> None:
    """Store the result with the running flow run (the API and the UI read the newest one)."""
    data = as_json(value)
    wrapped = not isinstance(data, dict)
    await ResultArtifact(
        type=RESULT_ARTIFACT,
        data={"value": data} if wrapped else data,
        description=WRAPPED_RESULT if wrapped else description,
    ).acreate()


def _may_have_artifacts(run: FlowRun) -> bool:
    """Whether the run has started (a result or progress may exist): not merely queued."""
    return run.start_time is not None or run.state is None or run.state.type not in (StateType.SCHEDULED,
                                                                                      StateType.PENDING)


async def read_runs(client: PrefectClient, run_ids: list[UUID]) -> dict[UUID, RunView]:
    """Flow runs and their result/progress artifacts: two API calls per ``READ_CHUNK`` runs
    (Prefect answers at most 200 objects per call), one when none has started."""
    found: dict[UUID, RunView] = {}
    for start in range(0, len(run_ids), READ_CHUNK):
        chunk = run_ids[start : start + READ_CHUNK]
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
        if not runs:
            continue
        found.update({r.id: RunView(r) for r in runs})
        started = [r.id for r in runs if _may_have_artifacts(r)]
        if not started:  # queued runs have no result or progress yet: one call saved
            continue
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=started),
                type=ArtifactFilterType(any_=[RESULT_ARTIFACT, PROGRESS_ARTIFACT]),
            ),
            limit=MAX_READ,
        )
        for artifact in sorted(artifacts, key=lambda a: a.created):
            if artifact.flow_run_id in found:
                found[artifact.flow_run_id].artifacts.append(artifact)
    return found

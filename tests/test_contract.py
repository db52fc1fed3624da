"""The task contract without a service: Prefect states -> Stupeflix statuses, error
placement per version, event order, and the seeds' example keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import Artifact, FlowRun, State, StateType

from flows.contract.keys import key_for, run_id_for
from flows.contract.runs import INVALID_PARAMETERS, PARTIAL_RESULT, RESULT_ARTIFACT, RunView
from flows.contract.stupeflix import stupeflix_status, unknown_status

# Every task key in seed 000's examples (grep -ohE '\b[A-Z2-7]{26}\b' 000_*.txt).
SEED_KEYS = [
    "5OYA5JQVFIAHYOMLQG5QV3U33M", "6GRQ3H5EHU7GXUTIOSS2GUDPGQ", "BCSIT5KDDQQTC7GZ6TBJE7NFIU",
    "LY5XZIPILG6WKKIAGQAB4RLHBY", "QJZTXA3LNZKQ6X4RPGQ5EHRSMI", "UM6EFJKQWMVON5N3CBKPV52NHE",
    "XDJC6DIS5UDSFBBOLXWMN27ORI",
]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run_in(kind: StateType, name: str | None = None, message: str | None = None, **fields) -> FlowRun:
    state = State(type=kind, name=name, message=message, timestamp=fields.pop("at", T0 + timedelta(seconds=5)))
    return FlowRun(id=uuid4(), flow_id=uuid4(), state=state, created=T0, tags=["task:hello"], **fields)


@pytest.mark.parametrize(
    "kind, name, run_count, expected",
    [
        (StateType.SCHEDULED, None, 0, "queued"),
        (StateType.SCHEDULED, "Late", 0, "queued"),
        (StateType.SCHEDULED, "AwaitingRetry", 1, "executing"),
        (StateType.SCHEDULED, None, 1, "executing"),
        (StateType.PENDING, None, 0, "queued"),
        (StateType.PAUSED, None, 1, "queued"),
        (StateType.RUNNING, None, 1, "executing"),
        (StateType.RUNNING, "Retrying", 2, "executing"),
        (StateType.CANCELLING, None, 1, "executing"),
        (StateType.COMPLETED, None, 1, "success"),
        (StateType.FAILED, None, 1, "error"),
        (StateType.CRASHED, None, 1, "error"),
        (StateType.CANCELLED, None, 1, "error"),
    ],
)
def test_status_names(kind, name, run_count, expected):
    status = stupeflix_status(RunView(run_in(kind, name, run_count=run_count)))
    assert status["status"] == expected


def test_errors_under_error_in_v2_and_result_in_v1():
    failed = RunView(run_in(StateType.FAILED, message="boom", start_time=T0, end_time=T0 + timedelta(seconds=5)))
    v2, v1 = stupeflix_status(failed), stupeflix_status(failed, version="v1")
    assert v2["error"] == "boom" and "result" not in v2
    assert v1["result"] == "boom" and "error" not in v1
    assert unknown_status("NOPE", "v1")["result"] == unknown_status("NOPE", "v2")["error"] == "unknown task key"


def test_cancelled_crashed_and_invalid_parameter_errors():
    cancelled = stupeflix_status(RunView(run_in(StateType.CANCELLED, message="by the operator")))
    assert cancelled["error"] == "task was cancelled: by the operator"
    crashed = stupeflix_status(RunView(run_in(StateType.CRASHED, "Crashed")))
    assert crashed["status"] == "error" and "Crashed" in crashed["error"]
    errors = {"parameters": {"url": ["this field is required"]}}
    invalid = RunView(run_in(StateType.FAILED, INVALID_PARAMETERS, json.dumps(errors)))
    assert stupeflix_status(invalid)["error"] == errors
    assert stupeflix_status(invalid, version="v1")["result"] == errors


def test_a_run_created_already_failed_has_chronological_events_and_no_start():
    """Prefect stamps the initial state before it writes the row: created > state time."""
    refused = run_in(StateType.FAILED, INVALID_PARAMETERS, "{}", at=T0 - timedelta(milliseconds=3))
    events = stupeflix_status(RunView(refused))["events"]
    assert set(events) == {"queued", "completed"}
    assert events["queued"] <= events["completed"]


def test_events_of_a_run_that_ran():
    ran = run_in(StateType.COMPLETED, start_time=T0 + timedelta(seconds=1), end_time=T0 + timedelta(seconds=4))
    events = stupeflix_status(RunView(ran))["events"]
    assert events["queued"] < events["started"] < events["completed"]
    queued = stupeflix_status(RunView(run_in(StateType.SCHEDULED)))["events"]
    assert set(queued) == {"queued"}


def test_partial_results_missed_between_two_reads_are_replayed_as_executing():
    ran = run_in(StateType.COMPLETED, start_time=T0 + timedelta(seconds=1), end_time=T0 + timedelta(seconds=4))
    partials = [Artifact(type=RESULT_ARTIFACT, data=data, description=PARTIAL_RESULT)
                for data in ({"duration": 5.0}, {"duration": 5.0, "preview": "p.mp4"})]
    final = Artifact(type=RESULT_ARTIFACT, data={"duration": 5.0, "preview": "p.mp4", "export": "e.mp4"},
                     description="Task result")
    view = RunView(ran, [*partials, Artifact(type="progress", data=80), final])
    replayed = [stupeflix_status(earlier) for earlier in view.partials_after({partials[0].id})]
    assert [(s["status"], s["result"]) for s in replayed] == [("executing", partials[1].data)]
    assert "completed" not in replayed[0]["events"]
    assert [s["result"] for s in map(stupeflix_status, view.partials_after(set()))] == [p.data for p in partials]
    assert view.partials_after(view.result_ids()) == []
    assert stupeflix_status(view)["result"] == final.data


def test_seed_example_keys_round_trip():
    for key in SEED_KEYS:
        run_id = run_id_for(key)
        assert run_id is not None and key_for(run_id) == key
    assert run_id_for("NOTAKEY") is None and run_id_for("1" * 26) is None

"""Callbacks as the flow's last task (later tries in a send-callback run), errbacks from the automation,
in the surface's shape; the delivery outcome on the task's run."""

from __future__ import annotations

import queue
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType, FlowRunFilter,
                                            FlowRunFilterId)
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.local import free_port
from flows.contract.keys import run_id_for


def task_runs(service, key: str, expected: dict, tries: bool = False) -> dict[str, str | tuple[str, int]]:
    """Task run name -> state name (and number of tries) of a task's run, once it is
    ``expected`` or 10 s have passed (task runs are recorded from events, a little later)."""
    deadline = time.monotonic() + 10
    while True:
        with temporary_settings({PREFECT_API_URL: service.prefect_api}):
            with get_client(sync_client=True) as client:
                runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id_for(key)])))
        names = {run.name: run.state.name if run.state else None for run in runs}  # a state lands a little later
        found = {run.name: (names[run.name], run.run_count) if tries else names[run.name] for run in runs}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_callback_is_a_task_run_with_the_success_status(service, callbacks):
    status = service.run({"task_name": "hello", "name": "cb", "url_callback": callbacks.url("/hello-cb")})
    received = callbacks.wait("/hello-cb")
    assert received["status"] == "success" and received["result"] == "Hello cb"
    assert received["key"] == status["key"] and received["events"]["completed"]
    expected = {"callback 127.0.0.1": "Completed"}
    assert task_runs(service, status["key"], expected) == expected
    assert deliveries(service, status["key"], "delivered") == ["callback to 127.0.0.1: delivered (HTTP 200) after 1 try"]


def deliveries(service, key: str, until: str, timeout: float = 30) -> list[str]:
    """The delivery outcomes shown on a task's run (markdown artifacts), once one holds
    ``until`` or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with temporary_settings({PREFECT_API_URL: service.prefect_api}):
            with get_client(sync_client=True) as client:
                artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id_for(key)]),
                    type=ArtifactFilterType(any_=["markdown"])))
        found = [artifact.data for artifact in artifacts]
        if any(until in text for text in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_failed_callback_is_retried_on_the_schedule_and_leaves_the_task_successful(service):
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    status = service.run({"task_name": "hello", "name": "x", "url_callback": dead})
    assert status["status"] == "success" and status["result"] == "Hello x"
    expected = {"callback 127.0.0.1": ("Failed", 1)}  # the first try; the others in a send-callback run
    assert task_runs(service, status["key"], expected, tries=True) == expected
    outcomes = deliveries(service, status["key"], "gave up")
    assert outcomes == ["callback to 127.0.0.1: gave up after 5 tries: ConnectError: All connection attempts failed"]


def test_callback_to_a_refused_address_is_not_retried(service):
    status = service.run({"task_name": "hello", "name": "x", "url_callback": "http://10.255.255.1/hook"})
    assert status["status"] == "success"
    expected = {"callback 10.255.255.1": ("Failed", 1)}
    assert task_runs(service, status["key"], expected, tries=True) == expected
    [outcome] = deliveries(service, status["key"], "refused")
    assert outcome.startswith("callback to 10.255.255.1: refused, not sent:")


def test_v1_errback_carries_the_error_under_result(service, media, callbacks):
    missing = f"{media.base}/missing-v1.jpg"
    response = service.http.post(
        "/v1/create",
        json={"secret": service.account["secret"], "block": True,
              "tasks": {"task_name": "image.info", "url": missing, "url_errback": callbacks.url("/v1-failed")}},
    )
    status = response.json()[0]
    received = callbacks.wait("/v1-failed")
    assert received["status"] == "error" and "error" not in received
    assert received["result"] == status["result"] and "404" in received["result"]


def test_refused_parameters_get_their_errback_from_the_automation(service, callbacks):
    status = service.run({"task_name": "image.thumb", "width": "wide", "url_errback": callbacks.url("/invalid")})
    received = callbacks.wait("/invalid")
    assert received["key"] == status["key"] and received["status"] == "error"
    assert received["error"]["parameters"]["url"] == ["this field is required"]
    response = service.http.post(
        "/v1/create",
        json={"secret": service.account["secret"],
              "tasks": {"task_name": "image.thumb", "width": 5, "url_errback": callbacks.url("/invalid-v1")}},
    )
    received = callbacks.wait("/invalid-v1")
    assert received["key"] == response.json()[0]["key"] and "error" not in received
    assert received["result"]["parameters"]["url"] == ["this field is required"]
    try:  # once only
        extra = callbacks.wait("/invalid", timeout=2)
    except (AssertionError, queue.Empty):
        extra = None
    assert extra is None

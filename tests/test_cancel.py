"""Cancelling a running task through the Prefect API (as the UI's Cancel button does), and a
worker killed under a running task."""

from __future__ import annotations

import queue
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from deployments.local import LocalService
from flows.contract.keys import run_id_for
from tests.conftest import Service


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s")


def status_of(service, key: str) -> dict:
    return service.http.get("/v2/status", params={"secret": service.account["secret"], "tasks": key}).json()[0]


def run_state(service, key: str):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            return client.read_flow_run(run_id_for(key)).state


def no_second(callbacks, path: str) -> bool:
    try:
        callbacks.wait(path, timeout=2)
    except (AssertionError, queue.Empty):
        return True
    return False


def test_cancelling_a_running_task_stops_it(service, callbacks):
    task = {"task_name": "hello", "name": "slow", "delay": 20, "url_errback": callbacks.url("/cancelled")}
    key = service.create(task).json()[0]["key"]
    wait_for(lambda: status_of(service, key)["status"] == "executing", 30, "executing")
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id_for(key), Cancelling(), force=True)
    start = time.monotonic()
    wait_for(lambda: run_state(service, key).type == StateType.CANCELLED, 10, "Cancelled")
    status = status_of(service, key)
    assert status["status"] == "error" and "cancel" in status["error"]
    received = callbacks.wait("/cancelled", timeout=10 - (time.monotonic() - start))
    assert received["status"] == "error" and received["error"] == status["error"]
    assert no_second(callbacks, "/cancelled")


def test_a_killed_worker_crashes_its_runs_and_sends_their_errback(tmp_path, callbacks):
    """SIGKILL the only worker under a running task, with no re-runs allowed: the crash
    automation's recover-run marks the run Crashed ``heartbeat_timeout`` after its last
    heartbeat, ``up`` starts a new worker, and the errback is sent."""
    with LocalService(tmp_path, DRAGONFLOW_HEARTBEAT_TIMEOUT="10", DRAGONFLOW_CRASH_RETRIES="0") as local:
        service = Service(local)
        task = {"task_name": "hello", "name": "doomed", "delay": 60, "url_errback": callbacks.url("/crashed")}
        key = service.create(task).json()[0]["key"]
        wait_for(lambda: status_of(service, key)["status"] == "executing", 30, "executing")
        local.kill_worker()
        start = time.monotonic()
        wait_for(lambda: run_state(service, key).type == StateType.CRASHED, 45, "Crashed")
        status = status_of(service, key)
        assert status["status"] == "error" and "no heartbeat for 10 s" in status["error"]
        received = callbacks.wait("/crashed", timeout=60 - (time.monotonic() - start))
        assert received["status"] == "error" and received["error"] == status["error"]
        assert no_second(callbacks, "/crashed")
        assert service.run({"task_name": "hello", "name": "again"})["status"] == "success"  # the new worker

"""Callback receivers that are down, answer 500 or are slow: the task ends ``success`` at
once, later tries run in a ``send-callback`` run that waits AwaitingRetry between tries
(with one worker slot, other tasks run meanwhile), and the outcome shows on the task's run."""

from __future__ import annotations

import queue
import re
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from deployments.local import LocalService, free_port, serve_http
from flows.steps.notify import CALLBACK_FLOW
from flows.contract.keys import run_id_for
from tests.conftest import Service
from tests.test_callbacks import deliveries
from tests.test_cancel import status_of, wait_for

BACKOFF, TIMEOUT = 1.5, 1.0  # seconds before the 2nd try (then 3, 6, 12), and per try


class Receiver(BaseHTTPRequestHandler):
    """Answers ``plan[path]``'s next step (an HTTP status, or "slow": sleep past the
    callback timeout), then 200; records each body as (time, body)."""

    plan: dict[str, list[int | str]] = {}
    received: dict[str, "queue.Queue[tuple[float, bytes]]"] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        steps = self.plan.get(self.path)
        step = steps.pop(0) if steps else 200
        if step == "slow":
            time.sleep(TIMEOUT + 1)
            step = 200
        self.received.setdefault(self.path, queue.Queue()).put((time.monotonic(), body))
        self.send_response(step)
        self.end_headers()

    def log_message(self, *args):
        pass


def receiver(port: int = 0):
    return serve_http(Receiver, port)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    """The service with ONE worker slot, so a delivery holding it would stall other tasks."""
    env = {"DRAGONFLOW_WORKER_LIMIT": "1", "DRAGONFLOW_CALLBACK_BACKOFF": str(BACKOFF),
           "DRAGONFLOW_CALLBACK_TIMEOUT": str(TIMEOUT), "DRAGONFLOW_WORKER_POLL_SECONDS": "0.5"}
    with LocalService(tmp_path_factory.mktemp("delivery-home"), **env) as local:
        yield Service(local)


@pytest.fixture(scope="module")
def hooks() -> Iterator[str]:
    with receiver() as url:
        yield url


def delivery_run(service, key: str):
    """The ``send-callback`` run trying again the notification of task ``key``."""
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[CALLBACK_FLOW])),
                                         flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=key)))
    return runs[0] if runs else None


def state_names(service, run_id) -> list[str]:
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            return [state.name for state in client.read_flow_run_states(run_id)]


def another_task_while_waiting(service, key: str) -> dict:
    """Once the delivery of ``key`` waits for its next try, run another task (to ``success``)
    on the only worker slot; its status."""
    wait_for(lambda: (run := delivery_run(service, key)) and run.state.name == "AwaitingRetry", 20,
             f"the delivery of {key} waiting AwaitingRetry")
    status = service.run({"task_name": "hello", "name": "meanwhile"})
    assert status["status"] == "success"
    return status


def delivered(service, key: str, meanwhile: dict) -> str:
    """The delivery outcome shown on task ``key``'s run, once delivered; checks that the
    task and the ``meanwhile`` task had both ended before the delivery did."""
    [text] = deliveries(service, key, "delivered", timeout=40)
    run = delivery_run(service, key)
    assert run.state.is_completed()
    ended = run.state.timestamp
    assert datetime.fromisoformat(meanwhile["events"]["completed"]) < ended
    assert datetime.fromisoformat(status_of(service, key)["events"]["completed"]) < ended
    return text


def test_a_receiver_down_at_first_gets_the_callback_on_a_later_try(service):
    port = free_port()  # nothing listens there until the delivery has failed twice
    status = service.run({"task_name": "hello", "name": "down", "url_callback": f"http://127.0.0.1:{port}/late"})
    assert status["status"] == "success" and status["result"] == "Hello down"
    meanwhile = another_task_while_waiting(service, status["key"])
    with receiver(port):
        text = delivered(service, status["key"], meanwhile)
        _, body = Receiver.received["/late"].get(timeout=1)
    assert re.fullmatch(r"callback to 127\.0\.0\.1: delivered \(HTTP 200\) after [3-5] tries", text), text
    assert b'"status":"success"' in body and status["key"].encode() in body


def test_a_receiver_answering_500_twice_gets_it_on_the_third_try(service, hooks):
    Receiver.plan["/flaky"] = [500, 500]
    status = service.run({"task_name": "hello", "name": "flaky", "url_callback": f"{hooks}/flaky"})
    assert status["status"] == "success"
    meanwhile = another_task_while_waiting(service, status["key"])
    assert delivered(service, status["key"], meanwhile) == "callback to 127.0.0.1: delivered (HTTP 200) after 3 tries"
    times = [Receiver.received["/flaky"].get(timeout=1)[0] for _ in range(3)]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    # the documented schedule; Prefect may start a scheduled run up to half a second early
    assert gaps[0] >= BACKOFF - 0.5 and gaps[1] >= 2 * BACKOFF - 0.5, gaps
    names = state_names(service, delivery_run(service, status["key"]).id)
    assert names.count("AwaitingRetry") == 1 and names.count("Running") == 2, names


def test_a_slow_receiver_is_timed_out_and_tried_again(service, hooks):
    Receiver.plan["/slow"] = ["slow", "slow"]
    status = service.run({"task_name": "hello", "name": "slow", "url_callback": f"{hooks}/slow"})
    assert status["status"] == "success"
    took = datetime.fromisoformat(status["events"]["completed"]) - datetime.fromisoformat(status["events"]["started"])
    assert took.total_seconds() < TIMEOUT + 3  # one try's timeout at most, not the schedule
    meanwhile = another_task_while_waiting(service, status["key"])
    assert delivered(service, status["key"], meanwhile) == "callback to 127.0.0.1: delivered (HTTP 200) after 3 tries"


def test_a_cancelled_tasks_errback_is_retried_and_its_outcome_shown(service, hooks):
    Receiver.plan["/cancelled"] = [503]
    task = {"task_name": "hello", "name": "stop", "delay": 30, "url_errback": f"{hooks}/cancelled"}
    key = service.create(task).json()[0]["key"]
    wait_for(lambda: status_of(service, key)["status"] == "executing", 30, "executing")
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id_for(key), Cancelling(), force=True)
    [text] = deliveries(service, key, "delivered", timeout=40)
    assert text == "errback to 127.0.0.1: delivered (HTTP 200) after 2 tries"
    status = status_of(service, key)
    assert status["status"] == "error" and "cancel" in status["error"]

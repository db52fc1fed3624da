"""Clients that hang up and come back: a reconnecting status stream gets the current status
and every later change, and the API keeps no watcher subscription for a client that left
(streams, and blocking create/status calls alike).

The API app runs in this process (uvicorn on a loopback port, against the session's Prefect
server) so that its watcher's subscribers can be counted."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Iterator

import httpx
import pytest
import uvicorn
from prefect.settings import PREFECT_API_URL, temporary_settings

from api.app import create_app
from deployments.local import serve_http
from flows.contract.keys import key_for

RANK = {"queued": 0, "executing": 1, "success": 2, "error": 2}


class InProcessAPI:
    """The real API app served by uvicorn in a thread."""

    def __init__(self, prefect_api: str):
        self.app = create_app()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self._serve, args=(prefect_api,), daemon=True)

    def _serve(self, prefect_api: str) -> None:
        with temporary_settings({PREFECT_API_URL: prefect_api}):
            self.server.run()

    def subscribers(self) -> int:
        """Queues the watcher hands changes to, over every watched run."""
        return sum(len(queues) for queues in self.app.state.tasks.watcher._queues.values())

    def watched(self) -> list[str]:
        """Keys of the runs someone is subscribed to."""
        return [key_for(run_id) for run_id in list(self.app.state.tasks.watcher._queues)]

    def wait_subscribers(self, count: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while self.subscribers() != count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.subscribers()


@pytest.fixture(scope="module")
def api(service) -> Iterator[InProcessAPI]:
    running = InProcessAPI(service.prefect_api)
    running.thread.start()
    deadline = time.monotonic() + 30
    while not running.server.started:
        assert time.monotonic() < deadline and running.thread.is_alive(), "the in-process API did not start"
        time.sleep(0.05)
    yield running
    running.server.should_exit = True
    running.thread.join(10)


def statuses(lines: Iterator[str]) -> Iterator[dict]:
    """Each status a stream line carries (the first line is a list of them)."""
    for line in lines:
        if line:
            value = json.loads(line)
            yield from value if isinstance(value, list) else [value]


def create(api: InProcessAPI, secret: str, task: dict) -> str:
    response = httpx.post(f"{api.url}/v2/create", json={"secret": secret, "tasks": task}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()[0]["key"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_dropped_status_stream_leaves_no_subscriber(api, service, method):
    secret = service.account["secret"]
    key = create(api, secret, {"task_name": "hello", "name": "dropped", "delay": 20})
    params = {"secret": secret, "tasks": [key]}
    for attempt in range(3):  # hang up and come back, three times
        request = {"params": params} if method == "GET" else {"json": params}
        with httpx.stream(method, f"{api.url}/v2/status_stream", timeout=30, **request) as response:
            assert response.status_code == 200
            received = statuses(response.iter_lines())  # kept: dropping it would close the response
            first = next(received)
            assert first["key"] == key and first["status"] in ("queued", "executing"), first
            assert api.wait_subscribers(1) == 1, f"connection {attempt + 1} is not subscribed"
        assert api.wait_subscribers(0) == 0, f"the dropped stream is still subscribed: {api.watched()}"


def test_a_dropped_create_stream_leaves_no_subscriber(api, service):
    body = {"secret": service.account["secret"], "tasks": {"task_name": "hello", "name": "gone", "delay": 20}}
    with httpx.stream("POST", f"{api.url}/v2/create_stream", json=body, timeout=30) as response:
        received = statuses(response.iter_lines())
        key = next(received)["key"]
        next(received)  # a change: the stream is subscribed by now
        assert api.subscribers() == 1
    assert api.wait_subscribers(0) == 0, f"the dropped create_stream of {key} is still subscribed: {api.watched()}"


@pytest.fixture(scope="module")
def stalled() -> Iterator[str]:
    """An input server that answers nothing for 10 s (a task reading it takes that long)."""

    class Stalled(BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(10)
            self.send_error(404)

        def log_message(self, *args):
            pass

    with serve_http(Stalled) as url:
        yield url


@pytest.mark.parametrize("call", ["status", "create", "create_file"])
def test_a_client_that_hangs_up_on_a_blocking_call_leaves_no_subscriber(api, service, stalled, call):
    """A blocking call whose client gave up (its own timeout) stops waiting: nothing of it
    stays in the watcher until the task ends."""
    secret = service.account["secret"]
    task = {"task_name": "hello", "name": "impatient", "delay": 20}
    key = create(api, secret, task)
    calls = {
        "status": ("GET", "/v2/status", {"params": {"secret": secret, "tasks": key, "block": "true"}}),
        "create": ("POST", "/v2/create", {"json": {"secret": secret, "tasks": task, "block": True}}),
        "create_file": ("GET", "/v1/create_file/output.jpg",
                        {"params": {"secret": secret, "task_name": "image.thumb", "url": f"{stalled}/a.jpg"}}),
    }
    method, path, request = calls[call]
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            httpx.request(method, f"{api.url}{path}", timeout=0.5, **request)
    assert api.wait_subscribers(0, timeout=2) == 0, \
        f"blocking calls whose clients left still wait in the watcher: {api.watched()}"


def test_a_reconnecting_stream_gets_the_current_status_and_every_later_change(api, service):
    secret = service.account["secret"]
    key = create(api, secret, {"task_name": "hello", "name": "back", "delay": 4})
    params = {"secret": secret, "tasks": key}
    control: list[dict] = []  # a client that stays connected throughout

    def follow() -> None:
        with httpx.stream("GET", f"{api.url}/v2/status_stream", params=params, timeout=30) as response:
            control.extend(statuses(response.iter_lines()))

    follower = threading.Thread(target=follow)
    follower.start()
    with httpx.stream("GET", f"{api.url}/v2/status_stream", params=params, timeout=30) as response:
        for before in statuses(response.iter_lines()):
            if before["status"] == "executing" and (before["progress"] or 0) >= 20:
                break
    time.sleep(0.5)  # changes happen while this client is away
    with httpx.stream("GET", f"{api.url}/v2/status_stream", params=params, timeout=30) as response:
        lines = list(response.iter_lines())
    follower.join(30)
    assert not follower.is_alive() and control and control[-1]["status"] == "success", \
        f"the connected stream did not end with the task: {control[-1:]}"
    first, *later = [json.loads(line) for line in lines if line]
    assert isinstance(first, list) and len(first) == 1, first  # the current status first, as a list
    after = [first[0], *later]
    current = first[0]
    start = 100 if current["status"] == "success" else current["progress"] or 0
    assert RANK[current["status"]] >= RANK["executing"] and start >= before["progress"], \
        f"the reconnect started older than what the client saw before: {current} < {before}"
    progress = [s["progress"] or 0 for s in after if s["status"] == "executing"]
    assert progress == sorted(progress), f"changes out of order: {progress}"
    assert after[-1]["status"] == "success" and after[-1]["result"] == "Hello back", after[-1]
    seen = [json.dumps(s, sort_keys=True) for s in after]
    missed = [s for s in control if s["status"] == "success" or (s["status"] == "executing" and (s["progress"] or 0) > start)
              if json.dumps(s, sort_keys=True) not in seen]
    assert not missed, f"the reconnected stream missed changes the connected one saw: {missed}"
    assert api.wait_subscribers(0) == 0, f"{key} done; still watched: {api.watched()}"

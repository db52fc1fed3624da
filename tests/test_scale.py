"""The scale-out topology (``dragonflow up --scale``: PostgreSQL + Redis + 2 Prefect API
processes + 1 services process + 2 warm workers), started once for this module, and the
faults it survives: Prefect auth, runs crossing API replicas, a killed worker, a poison
input, a killed Prefect API process, a Redis restart and a whole Prefect-tier outage."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling, Pending

from deployments.local import LocalService, free_port
from flows.contract.keys import run_id_for
from flows.recovery import RECOVERED
from tests.conftest import Service
from tests.test_cancel import status_of, wait_for

HEARTBEAT_TIMEOUT = 10
FINAL = ("success", "error")


@pytest.fixture(scope="module")
def scale(tmp_path_factory) -> Iterator[LocalService]:
    # Workers poll only every 60 s: a run picked up sooner was picked up on an event.
    with LocalService(tmp_path_factory.mktemp("scale-home"), scale=True, workers=2,
                      DRAGONFLOW_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT), DRAGONFLOW_WORKER_POLL_SECONDS="60",
                      DRAGONFLOW_CRASH_RETRIES="2") as local:
        yield local
        started = local.children("")
    assert started and not [pid for pid in started if Path(f"/proc/{pid}").exists()], "up left processes behind"


@pytest.fixture(scope="module")
def api(scale) -> Service:
    return Service(scale)


@contextmanager
def prefect(scale: LocalService):
    """A Prefect client of the tier (replica 0, authenticated)."""
    with temporary_settings({PREFECT_API_URL: scale.prefect_api,
                             PREFECT_API_AUTH_STRING: scale.env["PREFECT_API_AUTH_STRING"]}):
        with get_client(sync_client=True) as client:
            yield client


def worker_pid(scale: LocalService, number: int) -> int:
    """The pid of worker ``number`` (1: client of Prefect API process 1, 2: of process 0)."""
    for pid in scale.children("deployments.cli", "worker", "--name"):
        if Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").endswith(f"-{number}".encode()):
            return pid
    raise AssertionError(f"no worker {number}")


@contextmanager
def paused(pid: int):
    """The process stopped (SIGSTOP) for the block's duration."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def hello(api: Service, name: str, delay: float = 0) -> str:
    response = api.create({"task_name": "hello", "name": name, "delay": delay})
    assert response.status_code == 200, response.text
    return response.json()[0]["key"]


def wait_final(api: Service, keys: list[str], timeout: float) -> dict[str, dict]:
    """The final statuses of ``keys`` (a 503 while Prefect is down counts as not yet)."""
    statuses: dict[str, dict] = {}

    def all_final() -> bool:
        for key in keys:
            if key not in statuses:
                response = api.http.get("/v2/status", params={"secret": api.account["secret"], "tasks": key})
                if response.status_code == 503:
                    return False
                status = response.json()[0]
                if status["status"] in FINAL:
                    statuses[key] = status
        return len(statuses) == len(keys)

    wait_for(all_final, timeout, f"{len(keys)} tasks ending")
    return statuses


def state_names(scale: LocalService, key: str) -> list[str]:
    with prefect(scale) as client:
        return [state.name for state in client.read_flow_run_states(run_id_for(key))]


def story(scale: LocalService, keys: list[str]) -> str:
    """Each run's state history and the service log's lines about it (for a failure)."""
    log = (scale.home / "up.log").read_text(errors="replace").splitlines()
    parts = []
    with prefect(scale) as client:
        for key in keys:
            run_id = run_id_for(key)
            run = client.read_flow_run(run_id)
            states = [f"  {s.timestamp:%H:%M:%S.%f} {s.name}: {s.message or ''}" for s in client.read_flow_run_states(run_id)]
            lines = [f"  | {line}" for line in log if str(run_id) in line or key in line or run.name in line]
            parts.append("\n".join([f"{key} ({run_id}, run_count {run.run_count}):", *states, *lines[-40:]]))
    return "\n".join(parts)


def test_the_prefect_api_refuses_requests_without_its_auth(scale, api):
    """Every Prefect API process requires the tier's auth string; our API and workers have it."""
    for url in scale.prefect_apis:
        assert httpx.post(f"{url}/flows/filter", json={}).status_code == 401
        token = base64.b64encode(scale.env["PREFECT_API_AUTH_STRING"].encode()).decode()
        assert httpx.post(f"{url}/flows/filter", json={}, headers={"Authorization": f"Basic {token}"}).status_code == 200
    assert len(scale.prefect_apis) == 2 and len(scale.children("prefect", "services start")) == 1
    assert api.run({"task_name": "hello", "name": "scale"})["result"] == "Hello scale"


@pytest.fixture
def second_api(scale) -> Iterator[str]:
    """Another ``dragonflow api`` process on the same tier and Redis (as a second machine's)."""
    [ours] = scale.children("deployments.cli", "api")
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{ours}/environ").read_text().split("\0") if "=" in item)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "deployments.cli", "api", "--port", str(port)],
                               env={**scale.env, "DRAGONFLOW_REDIS_URL": environ["DRAGONFLOW_REDIS_URL"]})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/healthz"), 60, "the second API")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_account_limits_hold_across_api_processes(scale, api, second_api):
    """Eight creates at once, half through each API process, for an account allowed three
    tasks at a time: exactly three are queued (the limit is counted under the account's
    Redis lock, not a lock of one process)."""
    limited = json.loads(api.cli("account", "create", "limit-race", "--max-concurrent", "3").stdout)
    body = {"secret": limited["secret"], "tasks": {"task_name": "hello", "name": "slow", "delay": 5}}
    urls = [api.api, second_api] * 4
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(lambda url: httpx.post(f"{url}/v2/create", json=body, timeout=60), urls))
    assert sorted(r.status_code for r in answers) == [200] * 3 + [401] * 5, [r.text for r in answers]
    with prefect(scale) as client:
        assert client.count_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["account:limit-race"]))) == 3


def test_a_worker_of_one_replica_picks_up_runs_created_through_the_other(scale, api):
    """Our API creates runs through Prefect API process 0; with worker 2 (process 0's
    client) stopped, worker 1 (process 1's client) gets the Scheduled event through Redis
    and runs them long before its 60 s poll."""
    with paused(worker_pid(scale, 2)):
        start = time.monotonic()
        keys = [hello(api, f"cross {n}") for n in range(3)]
        statuses = wait_final(api, keys, 30)
    assert all(s["status"] == "success" for s in statuses.values()), statuses
    assert time.monotonic() - start < 30


def test_runs_of_a_killed_worker_are_run_again_by_the_other(scale, api):
    """Worker 1 takes four tasks and is SIGKILLed while running them: each is recovered
    (heartbeats stop) and run again, and all end ``success``; none is left executing."""
    with paused(worker_pid(scale, 2)):
        keys = [hello(api, f"orphan {n}", delay=8) for n in range(4)]
        wait_for(lambda: all(status_of(api, k)["status"] == "executing" for k in keys), 40, "executing on worker 1")
    os.kill(worker_pid(scale, 1), signal.SIGKILL)
    statuses = wait_final(api, keys, 120)
    assert all(s["status"] == "success" for s in statuses.values()), statuses
    for key in keys:
        assert RECOVERED in state_names(scale, key)


def test_a_run_cancelled_after_its_worker_died_ends_cancelled_not_run_again(scale, api):
    """Worker 1 is SIGKILLed under a task, then the task is cancelled: once its heartbeats
    are missed it ends Cancelled (the errback kind of error), and was run only once."""
    with paused(worker_pid(scale, 2)):
        key = hello(api, "cancel me", delay=30)
        wait_for(lambda: status_of(api, key)["status"] == "executing", 40, "executing on worker 1")
        os.kill(worker_pid(scale, 1), signal.SIGKILL)
    with prefect(scale) as client:
        client.set_flow_run_state(run_id_for(key), Cancelling(), force=True)
    status = wait_final(api, [key], 60)[key]
    assert status["status"] == "error" and "cancelled while its worker was gone" in status["error"], status
    with prefect(scale) as client:
        assert client.read_flow_run(run_id_for(key)).run_count == 1


def test_a_run_claimed_by_a_worker_that_died_before_starting_it_is_run_again(scale, api):
    """A run left Pending (claimed, never started: its worker died in between) is recovered
    after the heartbeat timeout like a running one, and ends ``success``."""
    with paused(worker_pid(scale, 1)), paused(worker_pid(scale, 2)):
        key = hello(api, "claimed")
        with prefect(scale) as client:
            client.set_flow_run_state(run_id_for(key), Pending(), force=True)
    statuses = wait_final(api, [key], 60)
    assert statuses[key]["status"] == "success", statuses
    assert RECOVERED in state_names(scale, key)


def test_a_poison_input_is_retried_then_crashed_and_others_go_on(scale, api):
    """A run that kills whichever worker runs it is run ``crash_retries`` more times, then
    ends Crashed saying so; the supervised workers come back and other tasks succeed."""
    with prefect(scale) as client:
        flow_id = client.create_flow_from_name("poison")
        deployment = client.create_deployment(flow_id=flow_id, name="poison", work_pool_name="dragonflow",
                                              entrypoint="tests.poison:poison")
        run = client.create_flow_run_from_deployment(deployment)
    others = []
    deadline = time.monotonic() + 240
    while True:
        with prefect(scale) as client:
            state = client.read_flow_run(run.id).state
        if state.is_final() or time.monotonic() > deadline:
            break
        others.append(hello(api, f"bystander {len(others)}"))
        time.sleep(5)
    assert state.type == StateType.CRASHED, state
    assert "3 times" in state.message and "no heartbeat" in state.message
    with prefect(scale) as client:
        names = [s.name for s in client.read_flow_run_states(run.id)]
    assert names.count(RECOVERED) == 2
    statuses = wait_final(api, others + [hello(api, "after the poison")], 120)
    assert all(s["status"] == "success" for s in statuses.values()), statuses


def test_one_prefect_api_process_killed_under_load(scale, api):
    """Prefect API process 1 is SIGKILLed while tasks flow in: the clients of process 0
    keep working, ``up`` starts process 1 again, and every task ends ``success``."""
    keys: list[str] = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            keys.append(hello(api, f"load {len(keys)}"))
            time.sleep(0.3)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:  # counted, not timed: a loaded machine creates fewer tasks per second
        wait_for(lambda: len(keys) >= 4, 60, "4 tasks before the kill")
        [replica] = scale.children("prefect", "server start", f"--port {scale.prefect_apis[1].rsplit(':', 1)[1].split('/')[0]}")
        os.kill(replica, signal.SIGKILL)
        before, killed = len(keys), time.monotonic()
        wait_for(lambda: len(keys) >= before + 8 and time.monotonic() - killed >= 8, 120, "8 tasks after the kill")
    finally:
        stop.set()
        feeder.join()
    statuses = wait_final(api, keys, 180)
    assert len(keys) >= 12 and all(s["status"] == "success" for s in statuses.values()), statuses


def test_a_redis_restart_loses_nothing(scale, api):
    """Redis is killed and ``up`` starts it again (append-only file kept): events resume
    (a run is picked up on its Scheduled event again, well before the 60 s poll), and the
    tasks created around the restart all end ``success``."""
    before = [hello(api, f"before redis {n}", delay=3) for n in range(3)]
    [redis] = scale.children("redis-server")
    os.kill(redis, signal.SIGKILL)
    wait_for(lambda: scale.children("redis-server") and scale.children("redis-server") != [redis], 30, "Redis back")
    time.sleep(2)
    start = time.monotonic()
    after = hello(api, "after redis")
    statuses = wait_final(api, before + [after], 120)
    assert all(s["status"] == "success" for s in statuses.values()), statuses
    assert time.monotonic() - start < 45, "the run was not picked up on its event"


def test_a_whole_prefect_tier_outage(scale, api):
    """Every Prefect process (both API processes and the services) is killed: our API
    answers 503 while they are down; ``up`` starts them again and every task created
    before the outage ends ``success``, run once."""
    keys = [hello(api, f"outage {n}", delay=4) for n in range(3)]
    wait_for(lambda: all(status_of(api, k)["status"] == "executing" for k in keys), 40, "executing")
    for pid in scale.children("prefect", "server"):
        os.kill(pid, signal.SIGKILL)
    refused = api.create({"task_name": "hello", "name": "during the outage"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["errors"][0]["name"] == "prefect"
    statuses = wait_final(api, keys, 180)
    assert all(s["status"] == "success" for s in statuses.values()), f"{statuses}\n{story(scale, keys)}"
    with prefect(scale) as client:
        assert all(client.read_flow_run(run_id_for(k)).run_count == 1 for k in keys), story(scale, keys)

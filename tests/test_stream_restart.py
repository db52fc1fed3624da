"""The API process killed mid-stream (``dragonflow up`` starts it again): a client that
reconnects with ``status_stream`` for the same keys sees every task end."""

from __future__ import annotations

import json
import os
import signal
from typing import Iterator

import httpx
import pytest

from deployments.local import LocalService
from tests.conftest import Service
from tests.test_cancel import wait_for

TASKS = 4


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("stream-home")) as running:
        yield running


def statuses(lines: Iterator[str]) -> Iterator[dict]:
    """Each status a ``status_stream`` line carries (the first line is a list of them)."""
    for line in lines:
        if line:
            value = json.loads(line)
            yield from value if isinstance(value, list) else [value]


def api_pid(local: LocalService) -> int | None:
    pids = local.children("deployments.cli", "api")
    return pids[0] if pids else None


def test_a_client_reconnecting_after_the_api_restarted_sees_every_task_end(local):
    service = Service(local)
    tasks = [{"task_name": "hello", "name": f"n{i}", "delay": 6} for i in range(TASKS)]
    keys = [status["key"] for status in service.create(tasks).json()]
    params = {"secret": local.account["secret"], "tasks": keys}
    old = api_pid(local)
    seen: dict[str, dict] = {}
    with httpx.stream("GET", f"{local.api}/v2/status_stream", params=params, timeout=30) as response:
        assert response.status_code == 200
        received = statuses(response.iter_lines())
        while len(seen) < TASKS:
            status = next(received)
            seen[status["key"]] = status
        os.kill(old, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):  # the stream ends with its process
            for status in received:
                seen[status["key"]] = status
    assert any(status["status"] != "success" for status in seen.values())  # killed before they all ended
    wait_for(lambda: api_pid(local) not in (None, old), 30, "a new API process")
    wait_for(lambda: _answers(local.api), 60, "the restarted API")
    final: dict[str, dict] = {}
    with httpx.stream("GET", f"{local.api}/v2/status_stream", params=params, timeout=60) as response:
        for status in statuses(response.iter_lines()):
            if status["status"] in ("success", "error"):
                final[status["key"]] = status
    assert sorted(final) == sorted(keys)
    assert all(final[key]["status"] == "success" and final[key]["result"] == f"Hello n{i}"
               for i, key in enumerate(keys))


def _answers(api: str) -> bool:
    try:
        return httpx.get(f"{api}/v2/status", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False

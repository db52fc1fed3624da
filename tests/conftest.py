"""Session fixtures: the whole service started once with ``dragonflow up`` (SQLite Prefect
server, warm worker, API) in a temporary home, and real HTTP servers on 127.0.0.1 for
inputs and callbacks."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import httpx
import pytest
from PIL import Image

from blocks import storage
from blocks.storage import STORE_NAMES, StorageBlock
from deployments.local import ROOT, LocalService, serve_directory
from tests.fake_services import FakeServices

pytest_plugins = ["tests.storage_servers"]  # storage servers (S3, GCS, Azure, FTP, SFTP) as session fixtures

OWN = "http://own.test/storage"


@pytest.fixture
def own_stores(monkeypatch, tmp_path) -> dict[str, StorageBlock]:
    """Real storage blocks (local roots, public URLs under OWN) as ``load_store`` returns them."""
    blocks = {name: StorageBlock(root=str(tmp_path / "stores" / name), public_url=f"{OWN}/{name}")
              for name in STORE_NAMES}
    monkeypatch.setattr(storage, "_loaded", blocks)
    return blocks


class Service:
    """The running service: its URLs, environment and the local account."""

    def __init__(self, local: LocalService):
        self.api, self.prefect_api, self.env, self.account = local.api, local.prefect_api, local.env, local.account
        self.first_task = local.first_task
        self.http = httpx.Client(base_url=self.api, timeout=60)

    def create(self, tasks, *, secret: str | None = None, **body) -> httpx.Response:
        payload = {"secret": secret or self.account["secret"], "tasks": tasks, **body}
        return self.http.post("/v2/create", json=payload)

    def run(self, task: dict, **body) -> dict:
        """Create one task with block=true and return its final status."""
        response = self.create(task, block=True, **body)
        assert response.status_code == 200, response.text
        return response.json()[0]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deployments.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        )


@pytest.fixture(scope="session")
def fakes() -> Iterator[FakeServices]:
    """Local stand-ins for YouTube, Vimeo and the Facebook Graph API (tests/fake_services.py)."""
    with FakeServices() as running:
        yield running


@pytest.fixture(scope="session")
def service(tmp_path_factory, fakes) -> Iterator[Service]:
    """The whole service, started once per test session with ``dragonflow up``, its upload
    clients pointed at the fakes."""
    home = tmp_path_factory.mktemp("dragonflow-home")
    with LocalService(home, DRAGONFLOW_CALLBACK_BACKOFF="0.1", **fakes.env) as local:
        yield Service(local)
        assert local.process.poll() is None, "dragonflow up died during the tests"


class Recorder(BaseHTTPRequestHandler):
    """Records POSTed JSON bodies by path (callbacks and errbacks)."""

    received: dict[str, "queue.Queue[dict]"] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.setdefault(self.path, queue.Queue()).put(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """A static HTTP server on 127.0.0.1 over a directory of generated inputs."""
    root = tmp_path_factory.mktemp("media")
    with serve_directory(root) as url:

        class Media:
            base = url
            directory = root

            def image(self, name: str, size=(400, 300), color=(200, 30, 30), fmt="JPEG") -> str:
                Image.new("RGB", size, color).save(root / name, fmt)
                return f"{url}/{name}"

        yield Media()


@pytest.fixture(scope="session")
def callbacks():
    """A callback receiver on 127.0.0.1: ``url(path)`` and ``wait(path)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    class Callbacks:
        def url(self, path: str) -> str:
            return f"{url}{path}"

        def wait(self, path: str, timeout: float = 30) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if path in Recorder.received:
                    return Recorder.received[path].get(timeout=timeout)
                time.sleep(0.05)
            raise AssertionError(f"no callback on {path}")

    yield Callbacks()
    server.shutdown()

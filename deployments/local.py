"""Run the whole service (``dragonflow up``) in a subprocess on free local ports.

Used by the test suite and the benchmarks; also handy for your own integration tests:

    with LocalService(home) as service:
        httpx.post(f"{service.api}/v2/create", json={"secret": service.account["secret"], ...})
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PORT_ATTEMPTS = 3


class LocalService:
    """``dragonflow up`` in ``home`` with its own SQLite Prefect server (with ``scale``:
    its own scale-out tier, ``api_processes`` Prefect API processes, ``workers`` warm
    workers); stopped on exit. ``root``: the checkout whose code runs (another commit's
    worktree, for side-by-side benchmarks)."""

    def __init__(self, home: Path, fetch_allow: str = "127.0.0.1", scale: bool = False, api_processes: int = 2,
                 workers: int | None = None, root: Path = ROOT, **env: str):
        self.home, self.root = Path(home), Path(root)
        self.options = [*(["--scale", "--api-processes", str(api_processes)] if scale else []),
                        *(["--workers", str(workers)] if workers else [])]
        self.port, self.prefect_port = free_port(), free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRAGONFLOW_"))}
        self.env = {
            **clean,
            "DRAGONFLOW_HOME": str(self.home),
            "DRAGONFLOW_FETCH_ALLOW": fetch_allow,
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **({"PYTHONPATH": str(self.root)} if self.root != ROOT else {}),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LocalService":
        self.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            line = self._start()
            if line is not None:
                break
            log = (self.home / "up.log").read_text()
            taken = "address already in use" in log or "already listens on 127.0.0.1" in log
            if not taken or attempt == PORT_ATTEMPTS - 1:
                raise RuntimeError("dragonflow up did not start: " + log[-3000:])
            # another process took a free port between choosing it and binding it: choose again
            self.port, self.prefect_port = free_port(), free_port()
        info = json.loads(line)
        self.api, self.account, self.first_task = info["api"], info["account"], info.get("first_task")
        self.prefect_api = f"{info['prefect_ui']}/api"
        self.prefect_apis = info["prefect_apis"]
        self.env["PREFECT_API_URL"] = self.prefect_api
        if "prefect_auth_file" in info:
            self.env["PREFECT_API_AUTH_STRING"] = Path(info["prefect_auth_file"]).read_text().strip()
        return self

    def _start(self) -> str | None:
        """Start ``up``; its first JSON line, or ``None`` (stopped again) if it did not start."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "up", "--port", str(self.port),
             "--prefect-port", str(self.prefect_port), *self.options],
            env=self.env, stdout=subprocess.PIPE, stderr=open(self.home / "up.log", "w"), text=True, cwd=self.root,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout], daemon=True).start()
        line = ""
        deadline = time.monotonic() + 240
        while not line.startswith("{"):
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is None and time.monotonic() < deadline:
                    continue
                self.__exit__()
                return None
        return line

    def children(self, *words: str) -> list[int]:
        """Process ids of ``up``'s children whose command line contains all of ``words``
        (as substrings: some programs, like redis-server, rewrite theirs)."""
        pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = []
        for pid in pids:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
            except FileNotFoundError:  # exited meanwhile
                continue
            if all(word in command for word in words):
                found.append(int(pid))
        return found

    def worker_pid(self) -> int:
        """The process id of the service's (first) warm worker."""
        workers = self.children("deployments.cli", "worker")
        if not workers:
            raise RuntimeError("dragonflow up runs no worker")
        return workers[0]

    def kill_worker(self) -> int:
        """SIGKILL a warm worker, as a machine failure would (``up`` starts another);
        returns its process id."""
        pid = self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def __exit__(self, *exc_info: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_http(handler: Callable[..., BaseHTTPRequestHandler], port: int = 0) -> Iterator[str]:
    """Serve ``handler`` over HTTP on 127.0.0.1 (a free port unless ``port``), in a thread;
    yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_directory(directory: Path):
    """Serve ``directory`` over HTTP on 127.0.0.1 (inputs for tasks); yields its base URL."""
    return serve_http(partial(_QuietHandler, directory=str(directory)))

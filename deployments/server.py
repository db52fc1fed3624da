"""Starting and finding the Prefect server the service runs on."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import httpx

from flows.settings import Settings


def api_url_for(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/api"


def is_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check, what: str, timeout: float, *processes: subprocess.Popen) -> None:
    """Poll ``check()`` until true; fail if one of ``processes`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {shlex.join(map(str, process.args))} exited with code"
                                   f" {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def prefect_env(settings: Settings, client: dict[str, str]) -> dict[str, str]:
    """Environment for every process of the service; ``client``: its Prefect API
    settings (``PREFECT_API_URL``, with the scale tier ``PREFECT_API_AUTH_STRING``)."""
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    env.update(client)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # A 503 that outlasts the embedded server's own retries (prefect_server.py) is retried
    # by the client too, rather than failing a run's state change.
    env.setdefault("PREFECT_CLIENT_MAX_RETRIES", "60")
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    env["DRAGONFLOW_HOME"] = str(settings.home)
    env["DRAGONFLOW_PUBLIC_URL"] = settings.public_url
    return env


def retention_env(settings: Settings) -> dict[str, str]:
    """Prefect's database vacuum for the process that runs Prefect's services: flow runs
    that ended more than ``run_retention_days`` ago are deleted with their logs and
    artifacts (Prefect's ``flow_runs`` vacuum, hourly), old events as Prefect does by
    default (``events``); an operator's own ``PREFECT_SERVER_SERVICES_DB_VACUUM_*`` wins."""
    if not settings.run_retention_days:
        return {}
    return {"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
            "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(round(settings.run_retention_days * 86400))}


def start_server(settings: Settings, port: int) -> subprocess.Popen:
    """Start a SQLite Prefect server on 127.0.0.1:``port`` and wait until it answers."""
    api_url = api_url_for(port)
    env = {**retention_env(settings), **prefect_env(settings, {"PREFECT_API_URL": api_url})}
    env["PREFECT_UI_API_URL"] = api_url
    (settings.home / "prefect").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.prefect_server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(settings.home / "prefect-server.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: is_healthy(api_url), "Prefect server", 120, process)
    return process


def stop(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    """Terminate processes (newest first), killing any that outlive ``grace`` seconds."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in reversed(processes):
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

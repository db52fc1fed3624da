"""CLI commands run from another shell (same ``DRAGONFLOW_HOME``, no ``PREFECT_API_URL``)
talk to the service ``dragonflow up`` runs there, in both topologies on non-default ports,
or fail saying what to do; they never start a second Prefect server over its database."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from deployments.local import ROOT, LocalService, free_port


def shell_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the Prefect client settings: a shell that only shares DRAGONFLOW_HOME."""
    return {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}


def prefect_children(pid: int) -> list[str]:
    """Command lines of the Prefect processes among ``pid``'s children."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in pids:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().decode().replace("\0", " ")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if "prefect" in command:
                found.append(command)
    return found


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``dragonflow ARGS``; its result and the Prefect servers it started meanwhile
    (watched every 50 ms). Stopped with SIGTERM if it outlives ``timeout``."""
    process = subprocess.Popen([sys.executable, "-m", "deployments.cli", *args], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    servers: set[str] = set()

    def watch() -> None:
        while process.poll() is None:
            servers.update(prefect_children(process.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    watcher.join()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), servers


def authenticated_create(api: str, secret: str) -> httpx.Response:
    return httpx.post(f"{api}/v2/create", timeout=60,
                      json={"secret": secret, "tasks": {"task_name": "hello", "name": "shell"}})


def test_account_create_from_another_shell_reaches_the_running_sqlite_service(service):
    """Default topology on non-default ports: the account is created in the running
    service (its secret works on the API) and no other Prefect server is started."""
    assert not service.api.endswith(":8000") and not service.prefect_api.endswith(":4200/api")
    done, servers = cli(shell_env(service.env), "account", "create", "other-shell")
    assert done.returncode == 0, done.stderr
    assert servers == set(), f"the CLI started a Prefect server: {servers}"
    response = authenticated_create(service.api, json.loads(done.stdout)["secret"])
    assert response.status_code == 200, response.text


def test_a_second_up_in_the_same_home_refuses_and_starts_nothing(service):
    home = service.env["DRAGONFLOW_HOME"]
    done, servers = cli(shell_env(service.env), "up", "--port", str(free_port()), "--prefect-port", str(free_port()),
                        timeout=30)
    assert done.returncode == 1, done.stderr
    assert servers == set(), f"a second up started {servers}"
    assert f"already runs in DRAGONFLOW_HOME={home}" in done.stderr and service.api in done.stderr, done.stderr


def test_up_on_a_port_another_program_holds_fails_at_once_naming_the_flag(tmp_path):
    """``up --port P`` (or ``--prefect-port Q``) where another program listens fails before
    starting anything, naming the port and the flag to change; the home is left free."""
    home = tmp_path / "home"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRAGONFLOW_"))}
    env = {**clean, "DRAGONFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        for flags, named in [(["--port", str(taken), "--prefect-port", str(free_port())], "--port"),
                             (["--port", str(free_port()), "--prefect-port", str(taken)], "--prefect-port")]:
            done, servers = cli(env, "up", *flags, timeout=30)
            assert done.returncode == 1 and servers == set(), (done.stderr, servers)
            assert f"already listens on 127.0.0.1:{taken}: choose another {named}" in done.stderr, done.stderr
            assert not (home / "service.json").exists()


def test_scale_topology_cli_from_another_shell_then_a_clear_failure_once_stopped(tmp_path):
    """``up --scale`` on non-default ports: ``account create`` from another shell creates
    the account through the tier (with its auth, never printed), starts no Prefect server;
    the state file is private and gone once ``up`` stops; then the command fails clearly
    and starts no temporary SQLite server for the scale home."""
    home = tmp_path / "home"
    with LocalService(home, scale=True, api_processes=2, workers=1) as local:
        auth = local.env["PREFECT_API_AUTH_STRING"]
        env = shell_env(local.env)
        done, servers = cli(env, "account", "create", "scale-shell")
        assert done.returncode == 0, done.stderr
        assert servers == set(), f"the CLI started a Prefect server: {servers}"
        assert auth not in done.stdout + done.stderr
        response = authenticated_create(local.api, json.loads(done.stdout)["secret"])
        assert response.status_code == 200, response.text
        assert stat.S_IMODE(os.stat(home / "service.json").st_mode) == 0o600
        assert auth not in (home / "up.log").read_text()
    assert not (home / "service.json").exists()
    done, servers = cli(env, "account", "create", "after-stop", timeout=60)
    assert done.returncode == 1 and servers == set(), (done.stderr, servers)
    assert f"no running dragonflow service in DRAGONFLOW_HOME={home}" in done.stderr, done.stderr
    assert "dragonflow up --scale" in done.stderr, done.stderr


def test_nothing_running_worker_fails_clearly_and_account_uses_a_temporary_server(tmp_path):
    """In a home where nothing runs, ``worker`` fails at once naming what to do; ``account
    create`` (documented to work without a service) runs a temporary SQLite server over
    the home's database and stops it, leaving no state file behind."""
    home = tmp_path / "home"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRAGONFLOW_"))}
    env = {**clean, "DRAGONFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done, servers = cli(env, "worker", timeout=60)
    assert done.returncode == 1 and servers == set(), (done.stderr, servers)
    assert f"no running dragonflow service in DRAGONFLOW_HOME={home}" in done.stderr, done.stderr
    assert "dragonflow up" in done.stderr and "PREFECT_API_URL" in done.stderr, done.stderr
    done, servers = cli(env, "account", "create", "offline")
    assert done.returncode == 0, done.stderr
    assert len(servers) == 1 and "deployments.prefect_server" in servers.pop()
    assert json.loads(done.stdout)["name"] == "offline"
    assert (home / "prefect" / "prefect.db").exists() and not (home / "service.json").exists()

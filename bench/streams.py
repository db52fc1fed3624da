"""Stream fan-out: many concurrent status-stream clients must not multiply the load on
the Prefect server (one shared watcher in the API feeds them all).

Starts the service in a temporary home, runs 50 ``hello`` tasks with a delay (queued and
running, 8 at a time by default), and streams their statuses with 1 client, then with 200 concurrent clients
(each watching 5 of the tasks). Prints, per phase: CPU seconds used by the Prefect
server and by the API, and the added latency between a state change recorded by Prefect
(``events.started`` / ``events.completed``) and the line reaching the client (median, p95).

    .venv/bin/python bench/streams.py [--tasks 50] [--clients 200] [--delay 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from deployments.local import LocalService

TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> dict[str, int]:
    """The service's processes by role (prefect server, api, worker)."""
    roles = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) != pid:
            continue
        for role, marker in (("prefect", "prefect_server"), ("api", "cli api"), ("worker", "cli worker")):
            if marker in cmd:
                roles[role] = int(entry.name)
    return roles


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS


async def stream_client(api: str, secret: str, keys: list[str], latencies: list[float]) -> int:
    lines = 0
    async with httpx.AsyncClient(timeout=300) as client:
        async with client.stream("GET", f"{api}/v2/status_stream", params={"tasks": keys, "secret": secret}) as r:
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                now = time.time()
                lines += 1
                status = json.loads(line)
                if isinstance(status, list):
                    continue
                stamp = status["events"].get("completed") if status["status"] in ("success", "error") else None
                if stamp is None and status["status"] == "executing" and status["progress"] is None:
                    stamp = status["events"].get("started")
                if stamp:
                    latencies.append(now - datetime.fromisoformat(stamp).timestamp())
    return lines


async def phase(service: LocalService, roles: dict[str, int], tasks: int, clients: int, delay: float) -> dict:
    secret = service.account["secret"]
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.post(f"{service.api}/v2/create", json={
            "secret": secret, "tasks": [{"task_name": "hello", "name": f"t{i}", "delay": delay} for i in range(tasks)],
        })
        assert response.status_code == 200, response.text
        created = response.json()
    keys = [s["key"] for s in created]
    before = {role: cpu_seconds(pid) for role, pid in roles.items()}
    started = time.monotonic()
    latencies: list[float] = []
    rng = random.Random(7)
    picks = [keys] if clients == 1 else [rng.sample(keys, 5) for _ in range(clients)]
    lines = await asyncio.gather(*(stream_client(service.api, secret, p, latencies) for p in picks))
    elapsed = time.monotonic() - started
    used = {role: cpu_seconds(pid) - before[role] for role, pid in roles.items()}
    latencies.sort()
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "lines": sum(lines),
        "cpu_prefect_s": round(used.get("prefect", 0), 2),
        "cpu_api_s": round(used.get("api", 0), 2),
        "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--delay", type=float, default=3.0)
    parser.add_argument("--worker-limit", type=int, default=8, help="runs the warm worker runs at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        with LocalService(Path(home), DRAGONFLOW_WORKER_LIMIT=str(args.worker_limit)) as service:
            roles = children(service.process.pid)
            results = [asyncio.run(phase(service, roles, args.tasks, n, args.delay)) for n in (1, args.clients)]
    for result in results:
        print(json.dumps(result))
    one, many = results
    print(f"Prefect server CPU with {many['clients']} clients / with 1: "
          f"{many['cpu_prefect_s'] / max(one['cpu_prefect_s'], 0.01):.2f}x")


if __name__ == "__main__":
    main()

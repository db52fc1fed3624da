"""Load: a steady mix of small tasks at a set rate; nothing lost, no memory growth.

Starts the service in a topology (``--topology``: ``sqlite``, the embedded default, or
``scale``: PostgreSQL + Redis + 2 Prefect API processes + 1 Prefect services process + 2
workers) and a static file server for the inputs (made once: JPEGs with Pillow, an MP3 with
ffmpeg's lavfi). After ``--warmup`` tasks, posts one task per create call, cycling
``image.info``, ``image.thumb``, ``audio.info`` and ``hello``, at ``--rate`` tasks/s for
``--seconds`` (or ``--soak N`` tasks), follows each on its own ``status_stream`` until it
ends, and prints:

- completed / failed / lost: lost = no final status within ``--bound`` seconds of its
  create, or gone (an unknown key, or no flow run in Prefect); must be 0;
- latency from the create call to the final status line: p50/p95/p99, overall and by task;
- the server cost per task, as ``bench/orchestration.py`` prints it;
- the RSS, PSS and own memory (PSS of private mappings: PostgreSQL's shared buffer cache
  left out) of each process of the service (by role, with its descendants that have no role
  of their own) after the warm-up and at the end, and their growth: the soak's leak check
  (own memory within 10 %).

Loopback only. Not a test.

    .venv/bin/python bench/load.py [--topology sqlite|scale] [--rate 2] [--seconds 90]
        [--soak 10000] [--warmup N] [--bound 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.orchestration import (  # noqa: E402
    FINAL, TOPOLOGIES, CpuMeter, Groups, jpeg_near, load, machine, percentile, photo, prefect_settings,
    print_server_cost, read_trace, service_groups, start_service,
)
from deployments.local import LocalService, serve_directory  # noqa: E402
from flows.contract.stupeflix import UNKNOWN_KEY  # noqa: E402

LEAK_LIMIT = 0.10  # RSS growth allowed once warm
PROGRESS_EVERY = 60.0  # seconds between progress lines


@dataclass
class Task:
    """One posted task: what the client saw."""

    name: str
    start: float
    key: str | None = None
    end: float | None = None
    outcome: str = "lost"  # success, error or lost
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start


# --- inputs ----------------------------------------------------------------------------------


def make_inputs(directory: Path) -> None:
    """A ~100 KB JPEG (image.info), a 1.5 MP JPEG (image.thumb), a 5 s MP3 (audio.info)."""
    jpeg_near(directory / "small.jpg", 100_000)
    photo((1500, 1000), 3).save(directory / "photo.jpg", quality=88)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=5",
                    "-b:a", "128k", str(directory / "tone.mp3")], check=True)


def mix(base: str) -> list[dict]:
    return [
        {"task_name": "image.info", "url": f"{base}/small.jpg"},
        {"task_name": "image.thumb", "url": f"{base}/photo.jpg", "width": 320},
        {"task_name": "audio.info", "url": f"{base}/tone.mp3"},
        {"task_name": "hello", "name": "load"},
    ]


# --- posting and following -------------------------------------------------------------------


def statuses(line: str) -> list[dict]:
    """The statuses in one line of a status stream (the first line is a list)."""
    if not line.strip():
        return []
    found = json.loads(line)
    return found if isinstance(found, list) else [found]


async def final_status(streams: httpx.AsyncClient, secret: str, key: str, deadline: float) -> dict | None:
    """The task's final status from its status stream (reconnecting after errors), or None
    when it has not ended by ``deadline``."""
    params = {"tasks": key, "secret": secret}
    while time.time() < deadline:
        try:
            async with asyncio.timeout(deadline - time.time()):
                async with streams.stream("GET", "/v2/status_stream", params=params) as answer:
                    async for line in answer.aiter_lines():
                        final = next((s for s in statuses(line) if s["status"] in FINAL), None)
                        if final:
                            return final
        except TimeoutError:
            return None
        except (httpx.HTTPError, ValueError):
            await asyncio.sleep(0.5)
    return None


async def one(http: httpx.AsyncClient, streams: httpx.AsyncClient, secret: str, definition: dict,
              bound: float) -> Task:
    """Create one task and follow it to its end."""
    task = Task(definition["task_name"], time.time())
    try:
        answer = await http.post("/v2/create", json={"secret": secret, "tasks": definition})
        answer.raise_for_status()
        [created] = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        task.outcome, task.error = "error", f"create refused: {error!r}"[:200]
        return task
    task.key = created["key"]
    final = created if created["status"] in FINAL else await final_status(streams, secret, task.key, task.start + bound)
    if final is None or UNKNOWN_KEY in str(final.get("error")):
        task.error = "gone" if final else f"not ended within {bound:g} s"
        return task
    task.end, task.outcome, task.error = time.time(), final["status"], final.get("error")
    return task


async def post_at_rate(api: str, secret: str, definitions: list[dict], count: int, rate: float,
                       bound: float, progress: list[Task]) -> list[Task]:
    """Post ``count`` tasks, cycling ``definitions``, at ``rate`` per second; each ended task
    is appended to ``progress`` too. All tasks, once every one has ended or hit ``bound``."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)

    async def counted(coroutine) -> Task:
        progress.append(task := await coroutine)
        return task

    async with httpx.AsyncClient(base_url=api, timeout=60) as http, \
            httpx.AsyncClient(base_url=api, timeout=httpx.Timeout(60, read=None), limits=limits) as streams:
        start, running = time.monotonic(), []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            definition = definitions[i % len(definitions)]
            running.append(asyncio.create_task(counted(one(http, streams, secret, definition, bound))))
        return await asyncio.gather(*running)


async def report_progress(progress: list[Task], count: int, groups: Callable[[], Groups],
                          every: float = PROGRESS_EVERY) -> None:
    """Every ``every`` seconds: tasks ended so far, the service's total RSS and each
    process group's own memory (a soak shows whether memory levels off)."""
    start = time.monotonic()
    while True:
        await asyncio.sleep(every)
        sizes = memory(groups())
        total = sum(rss for rss, _, _, _ in sizes.values())
        own = ", ".join(f"{name} {size:.0f}" for name, (_, _, size, _) in sizes.items())
        print(f"   {time.monotonic() - start:6.0f} s: {len(progress)}/{count} ended"
              f" ({Counter(t.outcome for t in progress).get('lost', 0)} lost), service RSS {total:.0f} MiB,"
              f" load {load()}; own memory MiB: {own}", flush=True)


async def run_load(api: str, secret: str, definitions: list[dict], count: int, rate: float, bound: float,
                   groups: Callable[[], Groups]) -> list[Task]:
    """``post_at_rate`` with a progress line every ``PROGRESS_EVERY`` seconds."""
    progress: list[Task] = []
    reporter = asyncio.create_task(report_progress(progress, count, groups))
    try:
        return await post_at_rate(api, secret, definitions, count, rate, bound, progress)
    finally:
        reporter.cancel()


async def runs_missing(service: LocalService, keys: list[str]) -> set[str]:
    """The keys whose flow run Prefect does not have."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import temporary_settings

    from flows.contract.keys import key_for, run_id_for

    found = set()
    with temporary_settings(prefect_settings(service)):
        async with get_client() as client:
            for i in range(0, len(keys), 200):
                ids = [run_id_for(k) for k in keys[i:i + 200]]
                found |= {key_for(r.id) for r in await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)}
    return set(keys) - found


# --- figures ---------------------------------------------------------------------------------


def memory(groups: Groups) -> dict[str, tuple[float, float, float, int]]:
    """RSS, PSS and own memory (MiB) and the process count of each group. PSS shares each
    shared page among the processes mapping it: summed over PostgreSQL's backends, RSS counts
    the shared buffers once per backend, PSS once. Own memory is the PSS of the private
    mappings only: shared memory segments (PostgreSQL's buffer cache, fixed in size by
    ``shared_buffers`` and filling as the database grows) left out."""
    sizes = {}
    for name, pids in groups.items():
        kib = Counter()
        for pid in pids:
            try:
                lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
            except OSError:
                continue
            private = True
            for line in lines:
                head, _, rest = line.partition(" ")
                if "-" in head and not head.endswith(":"):  # a mapping: "start-end perms offset dev inode [path]"
                    private = rest[3:4] == "p"
                elif head in ("Rss:", "Pss:"):
                    kib[head] += int(rest.split()[0])
                    if head == "Pss:" and private:
                        kib["own"] += int(rest.split()[0])
        sizes[name] = (kib["Rss:"] / 1024, kib["Pss:"] / 1024, kib["own"] / 1024, len(pids))
    return sizes


def print_outcomes(tasks: list[Task]) -> int:
    """Completed / failed / lost and the latencies; returns the number lost."""
    outcomes = Counter(t.outcome for t in tasks)
    span = max(t.start for t in tasks) - min(t.start for t in tasks)
    print(f"   completed {outcomes['success']}, failed {outcomes['error']}, lost {outcomes['lost']}"
          f" (must be 0) of {len(tasks)} posted in {span:.1f} s ({(len(tasks) - 1) / max(span, 1e-9):.2f}/s)")
    for reason, n in Counter(str(t.error)[:160] for t in tasks if t.outcome != "success").most_common(5):
        print(f"     x{n}: {reason}")
    ended = [t for t in tasks if t.end is not None]
    if ended:
        print("   latency, create call -> final status line (s):      p50     p95     p99     max")
        for name in ["all", *sorted({t.name for t in ended})]:
            values = [t.latency for t in ended if name in ("all", t.name)]
            figures = [percentile(values, q) for q in (0.5, 0.95, 0.99)] + [max(values)]
            print(f"     {name + f' ({len(values)})':45s} {' '.join(f'{v:7.3f}' for v in figures)}")
        last = max(t.end for t in ended) - min(t.start for t in tasks)
        print(f"   last task ended {last:.1f} s after the first create")
    return outcomes["lost"]


def print_memory(before: dict[str, tuple[float, float, float, int]],
                 after: dict[str, tuple[float, float, float, int]]) -> bool:
    """RSS, PSS and own memory after the warm-up and at the end, by group; True when no
    group's own memory grew beyond LEAK_LIMIT (a group that was not there at the start fails)."""
    print("   memory (MiB; each process with its descendants that have no role of their own):")
    print(f"     {'process':20s} {'RSS start':>9s} {'end':>8s} {'growth':>8s} {'PSS start':>10s} {'end':>8s}"
          f" {'growth':>8s} {'own start':>10s} {'end':>8s} {'growth':>8s}  processes")
    ok = True
    for name in dict.fromkeys([*before, *after]):
        (rss0, pss0, own0, n0) = before.get(name, (0.0, 0.0, 0.0, 0))
        (rss1, pss1, own1, n1) = after.get(name, (0.0, 0.0, 0.0, 0))
        ok = ok and own0 > 0 and (own1 - own0) / own0 <= LEAK_LIMIT
        print(f"     {name:20s} {rss0:9.1f} {rss1:8.1f} {growth(rss0, rss1)} {pss0:10.1f} {pss1:8.1f}"
              f" {growth(pss0, pss1)} {own0:10.1f} {own1:8.1f} {growth(own0, own1)}  {n0} -> {n1}")
    totals = [sum(sizes[i] for sizes in figures.values()) for figures in (before, after) for i in (0, 1, 2)]
    print(f"     {'all':20s} {totals[0]:9.1f} {totals[3]:8.1f} {growth(totals[0], totals[3])}"
          f" {totals[1]:10.1f} {totals[4]:8.1f} {growth(totals[1], totals[4])}"
          f" {totals[2]:10.1f} {totals[5]:8.1f} {growth(totals[2], totals[5])}")
    print(f"   leak check, own memory growth within {LEAK_LIMIT:.0%} for every process:"
          f" {'met' if ok else 'NOT met'}")
    return ok


def growth(start: float, end: float) -> str:
    return f"{(end - start) / start:+8.1%}" if start else f"{'new':>8s}"


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=TOPOLOGIES, default="sqlite",
                        help="sqlite: the embedded Prefect server; scale: PostgreSQL + Redis + 2 Prefect API"
                             " processes + 1 services process + 2 workers.")
    parser.add_argument("--rate", type=float, default=2.0, help="Tasks posted per second.")
    parser.add_argument("--seconds", type=float, default=90.0, help="How long to post.")
    parser.add_argument("--soak", type=int, help="Post this many tasks instead (the leak check: 10000).")
    parser.add_argument("--warmup", type=int, help="Tasks run before the measures start (default: 5 %% of them, 20 at least).")
    parser.add_argument("--bound", type=float, default=300.0, help="Seconds a task may take before it counts as lost.")
    args = parser.parse_args()
    count = args.soak or round(args.rate * args.seconds)
    warmup = args.warmup if args.warmup is not None else max(20, count // 20)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}; load average at start {load()}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-")))
        files = tmp / "files"
        files.mkdir()
        make_inputs(files)
        definitions = mix(stack.enter_context(serve_directory(files)))
        service = stack.enter_context(start_service(tmp / "home", args.topology))
        groups = partial(service_groups, service)
        secret = service.account["secret"]
        print(f"topology {args.topology}: {', '.join(groups())}")
        print(f"mix: {', '.join(d['task_name'] for d in definitions)} in turn, one task per create call;"
              f" {count} tasks at {args.rate:g}/s after {warmup} warm-up tasks")

        warm = asyncio.run(run_load(service.api, secret, definitions, warmup, args.rate, args.bound, groups))
        print(f"warm-up: {dict(Counter(t.outcome for t in warm))}; load average {load()}", flush=True)
        before, meter = memory(groups()), CpuMeter(groups)
        meter.start()
        start = time.time()
        tasks = asyncio.run(run_load(service.api, secret, definitions, count, args.rate, args.bound, groups))
        used, _ = meter.used()
        calls, after = read_trace(service.home, start, time.time()), memory(groups())
        missing = asyncio.run(runs_missing(service, [t.key for t in tasks if t.key]))
        for task in (t for t in tasks if t.key in missing):
            task.outcome, task.error = "lost", "gone: no flow run in Prefect"
        print(f"\nload: {count} tasks; load average at end {load()}")
        lost = print_outcomes(tasks)
        print_server_cost(used, calls, len(tasks))
        leak_ok = print_memory(before, after)
    sys.exit(1 if lost or (args.soak and not leak_ok) else 0)


if __name__ == "__main__":
    main()

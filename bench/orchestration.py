"""Orchestration speed: latency, throughput and the Prefect server's ceiling, in one run.

The whole service is measured next to Prefect's stock ``serve`` path and next to what the
Prefect server alone can record.

Starts the service (``dragonflow up`` through ``LocalService``: Prefect server, blocks,
deployments, warm worker, API) in one of two topologies (``--topology``): ``sqlite``, the
embedded Prefect server (on SQLite, or with ``--postgres`` on a throw-away PostgreSQL cluster
from Debian's packages), or ``scale``: PostgreSQL + Redis + 2 Prefect API processes + 1
Prefect services process + 2 workers. Also a static file server for the inputs. Prints:

1. Latency: ``image.info`` on a ~100 KB JPEG, ``POST /v2/create`` then ``GET /v2/status``
   every 20 ms until ``success``; p50/p95 over ``--runs`` sequential tasks. Interleaved
   with it, the same flow served by Prefect's stock ``serve`` (a Runner starting
   ``python -m prefect.engine`` per run; ``bench/orchestration_stock.py``), created with
   ``create_flow_run_from_deployment`` and polled with ``read_flow_run`` every 20 ms.
2. Throughput: ``--tasks`` ``image.thumb`` tasks (1-2 MP JPEG inputs) in one create call,
   until all have ended: tasks/s, how many succeeded, failed, stayed unfinished; the server
   cost per task: CPU ms of all Prefect server processes (API and services), Prefect API
   calls (top 10 routes), and the tasks/s one server core would carry at that cost.
3. Ceiling: flow runs the Prefect server alone records per second (create from a
   deployment in a work pool no worker polls, then Pending, Running, Completed as a
   worker and the engine propose them), with 1, 4 and 8 concurrent clients.
4. Where the time goes in the latency case: phases from the run's own timestamps (state
   history, result artifact), the in-process cost of validation, fetch and probe, the
   Prefect API calls made per run (by process) and the timeline of a median run.

The Prefect API calls are counted from the embedded server's opt-in access log
(``DRAGONFLOW_PREFECT_ACCESS_LOG``, ``deployments/prefect_server.py``: one line per HTTP
request with start, duration, method, path, status, client port) and, on the scale
topology, from uvicorn's access lines in the Prefect API processes' logs (answer time, no
duration); websocket messages (events) are not counted. Not a test.

With ``--baseline REV`` the latency and throughput cases also run on commit ``REV`` (checked
out in a temporary git worktree, its own service started from it), alternating with this
checkout for ``--rounds`` rounds, and a last table puts the medians side by side with
their ratios.

    .venv/bin/python bench/orchestration.py [--topology sqlite|scale] [--api-processes 2] [--postgres] [--runs 60]
        [--baseline REV [--candidate REV] --rounds 2]
        [--stock-runs 10] [--tasks 500] [--ceiling-runs 200] [--stock-poll 1]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import httpx
from PIL import Image, ImageFilter

from deployments.local import ROOT, LocalService, free_port, serve_directory
from deployments.prefect_server import ACCESS_LOG

TICKS = os.sysconf("SC_CLK_TCK")
POLL = 0.02
FINAL = {"success", "error"}
CEILING_POOL = "orchestration-bench-ceiling"
STATUS_BATCH = 200  # keys per status call in the throughput case (more fail: Prefect's page limit)
STATUS_POLL = re.compile(r"/flow_runs/filter|/artifacts/filter|GET /flow_runs/\{id\} ")
TOPOLOGIES = {  # LocalService keyword arguments
    "sqlite": {},
    "scale": {"scale": True, "api_processes": 2, "workers": 2},
}
ROLES = (  # (command-line marker, role): the first that matches names a process of the service
    ("services start", "prefect services"),
    ("prefect_server", "prefect server"),
    ("server start", "prefect server"),
    ("cli up", "up"),
    ("cli worker", "worker"),
    ("cli api", "api"),
    ("redis-server", "redis"),
    ("postgres", "postgres"),
)
ACCESS_FILE = "prefect-access.tsv"  # our Prefect servers' access log, in the service's home
UVICORN_ACCESS = re.compile(  # Prefect's format: time | level | logger - client - "request line" status
    r'^(\d\d:\d\d:\d\d\.\d+) \| INFO +\| uvicorn\.access - [^ ]+:(\d+) - "(\w+) (\S+) [^"]*" (\d+)', re.M)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float | None, digits: int = 0) -> str:
    """Milliseconds, 6 wide; a dash when unknown (None, or NaN: not logged)."""
    return "     —" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:6.{digits}f}"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 2**20:.1f} GiB RAM"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- inputs ----------------------------------------------------------------------------------


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A photo-like picture: colour gradients, blurred noise, fine grain."""
    w, h = size
    small = (max(8, w // 10), max(8, h // 10))
    base = Image.merge("RGB", [
        Image.linear_gradient("L").rotate(seed * 37 % 360).resize(small),
        Image.radial_gradient("L").resize(small),
        Image.effect_noise(small, 40 + seed % 30).filter(ImageFilter.GaussianBlur(2)),
    ]).resize(size, Image.Resampling.BICUBIC)
    return Image.blend(base, Image.effect_noise(size, 12).convert("RGB"), 0.12)


def jpeg_near(path: Path, target_bytes: int, quality: int = 85) -> Path:
    """Save a photo-like 4:3 JPEG sized so that the file is about ``target_bytes``."""
    width = 640
    for _ in range(4):
        photo((width, width * 3 // 4), 1).save(path, quality=quality)
        width = round(width * math.sqrt(target_bytes / path.stat().st_size) / 4) * 4
    return path


def thumb_inputs(directory: Path, count: int, distinct: int = 20) -> list[str]:
    """``count`` input names (links to ``distinct`` JPEGs of 1 to 2 megapixels)."""
    sources = []
    for i in range(distinct):
        megapixels = 1.0 + i / (distinct - 1)
        ratio = (4, 3) if i % 2 else (3, 2)
        unit = math.sqrt(megapixels * 1e6 / (ratio[0] * ratio[1]))
        size = (round(unit * ratio[0]), round(unit * ratio[1]))
        path = directory / f"source-{i:02d}.jpg"
        photo(size, i).save(path, quality=88)
        sources.append(path)
    names = []
    for i in range(count):
        link = directory / f"in-{i:04d}.jpg"
        link.symlink_to(sources[i % distinct].name)
        names.append(link.name)
    return names


# --- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """CPU time of a process (and of its waited-for children, e.g. PostgreSQL backends)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    fields = stat[11:15] if with_children else stat[11:13]
    return sum(int(v) for v in fields) / TICKS


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            table[int(entry.name)] = (ppid, cmd)
    return table


def descendants(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in table.items() if pp == parent]
        found += children
        frontier += children
    return found


Groups = dict[str, list[int]]  # name -> process ids


def role_of(command: str) -> str | None:
    return next((role for marker, role in ROLES if marker in command), None)


def service_groups(service: LocalService, *roots: int) -> Groups:
    """The service's processes by role (``ROLES``), each with its descendants that have no
    role of their own (a worker's ffmpeg, PostgreSQL's backends): the ``up`` process's tree,
    the trees of ``roots`` and of processes whose command line names the service's home (a
    daemonised PostgreSQL). Several of a role are numbered ("worker 1"); Prefect server
    processes are "prefect api" when a separate services process exists."""
    table = process_table()
    children = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    members: dict[int, list[int]] = {}  # top pid -> its group

    def visit(pid: int, top: int | None) -> None:
        role = role_of(table[pid][1])
        if top is None or (role and role != role_of(table[top][1])):
            top = pid
        members.setdefault(top, []).append(pid)
        for child in children[pid]:
            visit(child, top)

    homed = sorted(pid for pid, (_, cmd) in table.items() if str(service.home) in cmd)
    for root in (service.process.pid, *roots, *homed):
        if root in table and not any(root in group for group in members.values()):
            visit(root, None)
    roles = {top: role_of(table[top][1]) or Path(table[top][1].split(" ")[0]).name for top in members}
    if "prefect services" in roles.values():
        roles = {top: "prefect api" if role == "prefect server" else role for top, role in roles.items()}
    counts, seen, groups = Counter(roles.values()), Counter(), {}
    for top in sorted(members):
        seen[roles[top]] += 1
        groups[f"{roles[top]} {seen[roles[top]]}" if counts[roles[top]] > 1 else roles[top]] = members[top]
    return groups


def socket_inodes(pids: list[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
        except OSError:
            continue
    return inodes


def tcp_sockets() -> Iterator[tuple[int, int, bool, int]]:
    """(local port, remote port, listening, inode) of every IPv4 TCP socket."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        yield int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), fields[3] == "0A", int(fields[9])


def prefect_ports(groups: Groups) -> set[int]:
    """The ports the Prefect server processes among ``groups`` listen on."""
    inodes = socket_inodes([pid for name, pids in groups.items() if name.startswith("prefect") for pid in pids])
    return {local for local, _, listening, inode in tcp_sockets() if listening and inode in inodes}


class CpuMeter:
    """CPU seconds used by this process ("bench") and by each group of ``groups()`` (read
    again at each reading, so that new processes count) between ``start()`` and ``used()``."""

    def __init__(self, groups: Callable[[], Groups]):
        self.groups = groups

    def _now(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.groups().items()}
        return {"bench": usage.ru_utime + usage.ru_stime, **used}

    def start(self) -> None:
        self._start, self._t = self._now(), time.monotonic()

    def used(self) -> tuple[dict[str, float], float]:
        """CPU seconds by group since ``start()``, and the wall seconds."""
        now = self._now()
        return {name: v - self._start.get(name, 0.0) for name, v in now.items()}, time.monotonic() - self._t

    def read(self) -> str:
        return cpu_line(*self.used())


def cpu_line(used: dict[str, float], wall: float) -> str:
    parts = ", ".join(f"{r} {v:.1f}" for r, v in sorted(used.items(), key=lambda kv: -kv[1]))
    total = sum(used.values())
    return f"CPU s over {wall:.1f} s wall: {parts} (sum {total:.1f} = {total / wall / os.cpu_count():.0%} of the cores)"


class PortOwners:
    """Which group of ``groups()`` owns each client connection to the Prefect ``ports``,
    sampled from /proc in a thread while it runs (connections of short-lived runs included)."""

    def __init__(self, ports: set[int], groups: Callable[[], Groups], interval: float = 0.02):
        self.ports, self.groups, self.interval = ports, groups, interval
        self.owners: dict[int, str] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        inodes = {inode: name for name, pids in self.groups().items() for inode in socket_inodes(pids)}
        for local, remote, _, inode in tcp_sockets():
            if remote in self.ports and inode in inodes:
                self.owners[local] = inodes[inode]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PortOwners":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- Prefect API calls (the servers' access log) ---------------------------------------------


@dataclass
class Call:
    start: float
    duration: float
    method: str
    path: str
    status: int
    port: int

    @property
    def name(self) -> str:
        return f"{self.method} {UUID_RE.sub('{id}', self.path.removeprefix('/api'))}"


def read_trace(home: Path, start: float = 0.0, end: float = float("inf")) -> list[Call]:
    """The HTTP calls the service's Prefect servers (started by ``start_service`` in ``home``)
    logged between ``start`` and ``end``: our access log's, and uvicorn's access lines in the
    logs of ``prefect server start`` processes (scale topology; answer time, no duration)."""
    calls = []
    for line in _text(home / ACCESS_FILE).splitlines():
        t, d, method, path, status, port = line.split("\t")
        calls.append(Call(float(t), float(d), method, path, int(status), int(port)))
    for log in sorted(home.glob("prefect-api-*.log")):
        for t, port, method, path, status in UVICORN_ACCESS.findall(_text(log)):
            calls.append(Call(clock_time(t), math.nan, method, path.split("?")[0], int(status), int(port)))
    return sorted((c for c in calls if start <= c.start <= end), key=lambda c: c.start)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def clock_time(hms: str) -> float:
    """Epoch seconds of a local time of day (HH:MM:SS.fff) within the last 24 hours."""
    now = datetime.now()
    moment = datetime.combine(now.date(), datetime.strptime(hms, "%H:%M:%S.%f").time())
    return (moment - timedelta(days=1) if moment > now + timedelta(minutes=1) else moment).timestamp()


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def postgres_cluster() -> Iterator[tuple[str, int]]:
    """A throw-away PostgreSQL cluster (Debian's binaries) on a free port; yields
    (SQLAlchemy asyncpg URL, postmaster pid)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        raise SystemExit("PostgreSQL is not installed: apt-get install postgresql")
    bin_dir = Path(binaries[-1])
    base = Path(tempfile.mkdtemp(prefix="orchestration-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "start",
            "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200")
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect")
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", postmaster
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def stock_runner(service: LocalService, poll: int) -> Iterator[subprocess.Popen]:
    env = {**service.env, "PREFECT_RUNNER_POLL_FREQUENCY": str(poll), "PREFECT_CLIENT_MAX_RETRIES": "20",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "orchestration_stock.py")],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(service.home / "stock.log", "w"),
    )
    try:
        yield process
    finally:
        stop_process(process, signal.SIGINT)


# --- 1. latency ------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed task: wall-clock marks seen by the client, plus what Prefect recorded."""

    path: str  # "ours" or "stock"
    start: float
    created: float  # create call answered
    seen_final: float
    status: str
    run_id: object = None
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def latency(self) -> float:
        return self.seen_final - self.start


async def our_run(http: httpx.AsyncClient, secret: str, task: dict, timeout: float) -> Run:
    from flows.contract.keys import run_id_for

    start = time.time()
    answer = await http.post("/v2/create", json={"secret": secret, "tasks": task})
    answer.raise_for_status()
    created = time.time()
    key = answer.json()[0]["key"]
    while True:
        await asyncio.sleep(POLL)
        [status] = (await http.get("/v2/status", params={"tasks": key, "secret": secret})).json()
        if status["status"] in FINAL or time.time() - start > timeout:
            return Run("ours", start, created, time.time(), status["status"], run_id_for(key))


async def stock_run(client, deployment_id, parameters: dict, timeout: float) -> Run:
    start = time.time()
    run = await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    created = time.time()
    while True:
        await asyncio.sleep(POLL)
        run = await client.read_flow_run(run.id)
        if (run.state and run.state.is_final()) or time.time() - start > timeout:
            status = "success" if run.state.is_completed() else f"{run.state.name}: {run.state.message}"
            return Run("stock", start, created, time.time(), status, run.id)


async def wait_for_deployment(client, name: str, runner: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            if runner.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stock runner did not register {name}")
            await asyncio.sleep(0.5)


async def latency(service: LocalService, url: str, runs: int, stock_runs: int, stock: subprocess.Popen | None,
                  timeout: float = 120) -> tuple[list[Run], list[Run]]:
    """Sequential runs of ours, with the stock path's runs spread among them (1 warm-up each;
    none without ``stock``)."""
    from prefect.client.orchestration import get_client

    from flows.image import ImageInfoParams

    task = {"task_name": "image.info", "url": url}
    parameters = {"params": ImageInfoParams(url=url).model_dump(mode="json"), "account": "local"}
    ours, theirs = [], []
    every = max(1, runs // max(1, stock_runs))
    async with httpx.AsyncClient(base_url=service.api, timeout=60) as http, get_client() as client:
        if stock is None:
            stock_runs = 0
        else:
            deployment = await wait_for_deployment(client, "image.info/stock", stock)
            await stock_run(client, deployment.id, parameters, timeout)
        await our_run(http, service.account["secret"], task, timeout)
        for i in range(runs):
            ours.append(await our_run(http, service.account["secret"], task, timeout))
            if (i + 1) % every == 0 and len(theirs) < stock_runs:
                theirs.append(await stock_run(client, deployment.id, parameters, timeout))
        while len(theirs) < stock_runs:
            theirs.append(await stock_run(client, deployment.id, parameters, timeout))
        for run in ours + theirs:
            await add_marks(client, run)
    return ours, theirs


async def add_marks(client, run: Run) -> None:
    """Prefect's own timestamps for a run: created, each state, the result artifact."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run = await client.read_flow_run(run.run_id)
    run.marks["created"] = flow_run.created.timestamp()
    for state in sorted(await client.read_flow_run_states(run.run_id), key=lambda s: s.timestamp):
        run.marks.setdefault(state.type.value.lower(), state.timestamp.timestamp())
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.run_id]))
    )
    results = [a.created.timestamp() for a in artifacts if a.type == "result"]
    if results:
        run.marks["result"] = min(results)


def print_latency(ours: list[Run], theirs: list[Run], stock_poll: int) -> dict[str, float]:
    print("\n1. Latency: image.info, create -> status success, polled every 20 ms (sequential tasks)")
    print(f"   {'path':44s} {'runs':>4s} {'p50':>7s} {'p95':>7s} {'min':>7s} {'max':>7s}  ok")
    rows = [("ours: POST /v2/create + GET /v2/status", ours),
            (f"stock: prefect.serve (poll {stock_poll} s, process/run)", theirs)]
    for label, runs in rows:
        values = [r.latency for r in runs]
        if not values:
            continue
        ok = sum(r.status == "success" for r in runs)
        print(f"   {label:44s} {len(runs):4d} {statistics.median(values):6.3f}s {percentile(values, 0.95):6.3f}s"
              f" {min(values):6.3f}s {max(values):6.3f}s  {ok}/{len(runs)}")
        for status in sorted({r.status for r in runs} - {"success"}):
            print(f"     not successful: {status[:200]}")
    ours_p50 = statistics.median(r.latency for r in ours)
    ratio = ours_p50 / statistics.median(r.latency for r in theirs) if theirs else math.nan
    p95 = percentile([r.latency for r in ours], 0.95)
    print(f"   targets: p50 <= 0.20 s ({'met' if ours_p50 <= 0.20 else 'NOT met'}),"
          f" p95 <= 0.40 s ({'met' if p95 <= 0.40 else 'NOT met'})"
          + (f", ours/stock p50 = {ratio:.3f} <= 0.15 ({'met' if ratio <= 0.15 else 'NOT met'})" if theirs else ""))
    if stock_poll != 10 and theirs:
        print(f"   (stock runner polls every {stock_poll} s; Prefect's default, 10 s, adds ~{(10 - stock_poll) / 2:.1f} s"
              " of waiting on average)")
    return {"p50 s": ours_p50, "p95 s": percentile([r.latency for r in ours], 0.95)}


# --- 4. where the time goes ------------------------------------------------------------------


def in_process_steps(url: str, repeats: int = 20) -> dict[str, float]:
    """Median cost, in this process, of the API's validation, the flow's fetch and probe, and
    the whole run through Prefect's engine as the warm worker runs it (wall and CPU time)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from api.stupeflix.tasks import TaskService, check_definitions, with_version_defaults
    from flows.registry import TASKS
    from flows.steps.fetch import fetch
    from flows.steps.image.probe import probe_image, to_image_info

    definition = {"task_name": "image.info", "url": url}
    spec = TASKS["image.info"]
    times: dict[str, list[float]] = defaultdict(list)

    async def once(work: Path) -> None:
        t0 = time.perf_counter()
        [checked] = check_definitions(definition)
        spec.params.model_validate(with_version_defaults(checked, "v2")).model_dump(mode="json")
        t1 = time.perf_counter()
        source = await fetch.fn(url, work)
        t2 = time.perf_counter()
        to_image_info(await asyncio.to_thread(probe_image, source))
        t3 = time.perf_counter()
        times["validation"].append(t1 - t0)
        times["fetch"].append(t2 - t1)
        times["probe"].append(t3 - t2)

    async def engine(service: TaskService) -> None:
        run = await service.create_one(definition, "local", state=Pending())
        wall, cpu = time.perf_counter(), time.process_time()
        state = await run_flow(spec.flow, flow_run=run, return_type="state")
        times["engine"].append(time.perf_counter() - wall)
        times["engine_cpu"].append(time.process_time() - cpu)
        assert state.is_completed(), state

    async def all_runs() -> None:
        async with get_client() as client:
            for i in range(repeats + 1):
                with tempfile.TemporaryDirectory() as work:
                    await once(Path(work))
                await engine(TaskService(client))
                if i == 0:
                    times.clear()

    asyncio.run(all_runs())
    return {name: statistics.median(values) for name, values in times.items()}


PHASES = [
    ("client sends create -> run created in Prefect", "start", "created"),
    ("run created -> Pending (pickup: poll + claim)", "created", "pending"),
    ("Pending -> Running (start: engine | subprocess)", "pending", "running"),
    ("Running -> result artifact (fetch, probe, record)", "running", "result"),
    ("result artifact -> Completed (state report)", "result", "completed"),
    ("Running -> Completed", "running", "completed"),
    ("Completed -> client sees it (20 ms poll)", "completed", "seen_final"),
]


def mark(run: Run, name: str) -> float | None:
    if name == "start":
        return run.start
    if name == "seen_final":
        return run.seen_final
    return run.marks.get(name)


def phase(runs: list[Run], a: str, b: str) -> float | None:
    values = [mark(r, b) - mark(r, a) for r in runs if mark(r, a) is not None and mark(r, b) is not None]
    return median_or_none(values)


def print_phases(ours: list[Run], theirs: list[Run], steps: dict[str, float], home: Path) -> None:
    print(f"\n4. Where the time goes (latency case; medians in ms over {len(ours)} | {len(theirs)} runs)")
    print(f"   {'phase':52s} {'ours':>6s} {'stock':>6s}")
    print(f"   {'create call (client-timed)':52s} {ms(median_or_none([r.created - r.start for r in ours]))}"
          f" {ms(median_or_none([r.created - r.start for r in theirs]))}")
    calls = read_trace(home, ours[0].start, ours[-1].seen_final)
    for label, predicate in (
        ("  of which Prefect create_flow_run (server time)", lambda c: c.name.endswith("/create_flow_run")),
        ("  of which status read-back (2 filter calls, server)", lambda c: c.name.endswith("/filter")),
    ):
        values = []
        for run in ours:
            inside = [c.duration for c in calls if run.start <= c.start <= run.created and predicate(c)]
            if inside:
                values.append(sum(inside))
        print(f"   {label:52s} {ms(median_or_none(values))}")
    print(f"   {'  of which validation (in-process, parameters model)':52s} {steps['validation'] * 1000:6.2f}")
    for label, a, b in PHASES:
        print(f"   {label:52s} {ms(phase(ours, a, b))} {ms(phase(theirs, a, b))}")
    print(f"   {'  fetch 100 KB from the local server (in-process)':52s} {ms(steps['fetch'])}")
    print(f"   {'  probe_image + to_image_info (in-process)':52s} {ms(steps['probe'])}")
    print(f"   {'whole run_flow in-process, warm (Pending -> Completed)':52s} {ms(steps['engine'])}"
          f"   (CPU {steps['engine_cpu'] * 1000:.0f} ms; the task's own work: fetch + probe above)")
    print(f"   {'total (client-timed)':52s} {ms(median_or_none([r.latency for r in ours]))}"
          f" {ms(median_or_none([r.latency for r in theirs]))}")


async def count_events(run_ids: list) -> list[Counter]:
    """Prefect events of each run, by name: its own (state changes, the worker's beats and
    release) and its task runs' (related to it), read back from Prefect's event store."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventOccurredFilter

    await asyncio.sleep(3)  # the event persister writes in batches
    counts = []
    async with get_client() as client:
        for run_id in run_ids:
            run = await client.read_flow_run(run_id)
            page = await client.read_events(EventFilter(
                any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
                occurred=EventOccurredFilter(since=run.created - timedelta(seconds=1)),
            ), limit=50)
            events = list(page.events)
            while page.next_page:
                page = await client.read_events_page(page.next_page)
                events += page.events
            counts.append(Counter(event.event for event in events))
    return counts


def print_events(counts: list[Counter]) -> float:
    """Events per run (median of ``counts``) by name; their median total."""
    names = sorted({name for c in counts for name in c}, key=lambda n: -sum(c[n] for c in counts))
    total = statistics.median(sum(c.values()) for c in counts)
    print(f"   Prefect events per run (median of {len(counts)} runs: {total:.0f}; websocket messages, not HTTP calls):")
    for name in names:
        print(f"     {name:60s} {statistics.median(c[name] for c in counts):4.1f}")
    return total


def print_calls(census: list[Run], owners: dict[int, str], home: Path, label: str) -> None:
    """Prefect API calls per run, by process and endpoint, and the timeline of the median run."""
    per_run: list[Counter] = []
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    timelines = []
    for run in census:
        calls = read_trace(home, run.start, run.seen_final)
        counts = Counter()
        for call in calls:
            who = owners.get(call.port, "other")
            counts[(who, call.name)] += 1
            durations[(who, call.name)].append(call.duration)
        per_run.append(counts)
        timelines.append((run.latency, run, calls))
    keys = sorted({k for c in per_run for k in c}, key=lambda k: (k[0], -sum(c[k] for c in per_run)))
    total = statistics.median(sum(c.values()) for c in per_run)
    print(f"   {label}: Prefect API calls per run (median of {len(census)} runs: {total:.0f} calls;"
          " process, endpoint, calls per run, median server ms):")
    for who, name in keys:
        count = statistics.median(c[(who, name)] for c in per_run)
        if count:
            print(f"     {who:9s} {name:58s} {count:4.1f}  {ms(statistics.median(durations[(who, name)]), 1)}")
    _, run, calls = sorted(timelines, key=lambda t: t[0])[len(timelines) // 2]
    print(f"   {label}: timeline of the median run ({run.latency * 1000:.0f} ms; ms from the create call,"
          " process, call, server ms; status polls folded):")
    events = [(c.start, f"{owners.get(c.port, 'other'):9s} {c.name} ({c.status})", c.duration) for c in calls]
    events += [(v, f"{'':9s} -- Prefect records {k}", None) for k, v in run.marks.items()]
    events += [(run.created, f"{'':9s} -- create call answered", None),
               (run.seen_final, f"{'':9s} -- client sees the final status", None)]
    folded = 0
    for t, text, duration in sorted(events, key=lambda e: e[0]):
        if t > run.created and text.startswith(("api", "bench")) and STATUS_POLL.search(text):
            folded += 1
            continue
        print(f"     {(t - run.start) * 1000:7.1f}  {text}{'' if duration is None else f'  {ms(duration, 1).strip()}'}")
    print(f"     ({folded} status-poll calls folded)")


# --- 2. throughput ---------------------------------------------------------------------------


async def runs_created_since(client, start: float, tag: str) -> list:
    """Flow runs tagged ``tag`` whose expected start is after ``start`` (all pages)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime, FlowRunFilterTags

    after = datetime.fromtimestamp(start, timezone.utc)
    runs, page = [], None
    while page is None or len(page) == 200:
        page = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]),
                                          expected_start_time=FlowRunFilterExpectedStartTime(after_=after)),
            limit=200, offset=len(runs))
        runs += page
    return runs


async def throughput(service: LocalService, base: str, names: list[str], timeout: float) -> dict:
    """One create call with every task, then status polls (1 s) of the unfinished ones until
    all have ended. When the create call fails, the runs it made anyway are followed instead."""
    from prefect.client.orchestration import get_client

    from flows.contract.keys import key_for

    secret = service.account["secret"]
    tasks = [{"task_name": "image.thumb", "url": f"{base}/{name}", "width": 320} for name in names]
    result: dict = {"final": {}, "create_error": None}
    async with httpx.AsyncClient(base_url=service.api, timeout=timeout) as http, get_client() as client:
        start = time.time()
        answer = await http.post("/v2/create", json={"secret": secret, "tasks": tasks})
        result["create_seconds"] = time.time() - start
        if answer.status_code == 200:
            keys = [status["key"] for status in answer.json()]
            result["keys"] = len(set(keys))
        else:
            result["create_error"] = f"{answer.status_code} {answer.text[:300]}"
            keys = [key_for(run.id) for run in await runs_created_since(client, start, "image.thumb")]
            result["keys"] = 0
        result["runs"] = len(set(keys))
        pending = list(dict.fromkeys(keys))
        while pending and time.time() - start < timeout:
            await asyncio.sleep(1.0)
            statuses = []
            for i in range(0, len(pending), STATUS_BATCH):
                answer = await http.post("/v2/status", json={"secret": secret, "tasks": pending[i:i + STATUS_BATCH]})
                answer.raise_for_status()
                statuses += answer.json()
            now = time.time()
            for status in statuses:
                if status["status"] in FINAL:
                    result["final"][status["key"]] = (status["status"], now, status.get("error"))
            pending = [key for key in pending if key not in result["final"]]
        result["start"], result["pending"] = start, pending
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        from flows.contract.keys import run_id_for

        ids = [run_id_for(k) for k in keys]  # Prefect's own end times (not rounded to the poll)
        runs = []
        for i in range(0, len(ids), 200):
            runs += await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[i:i + 200])))
        result["created"] = sorted(r.created.timestamp() for r in runs)
        result["ended"] = sorted(r.end_time.timestamp() for r in runs if r.end_time)
    return result


def print_throughput(result: dict, count: int, used: dict[str, float], wall: float, calls: list[Call]) -> dict[str, float]:
    final = result["final"]
    outcomes = Counter(status for status, _, _ in final.values())
    start = result["start"]
    last_seen = max((t for _, t, _ in final.values()), default=start)
    ended = result["ended"]
    figures = {"tasks/s": math.nan, "steady tasks/s": math.nan}
    print(f"\n2. Throughput: {count} image.thumb tasks (1-2 MP JPEG inputs, 320 px wide) in one create call")
    if result["create_error"]:
        print(f"   create call FAILED after {result['create_seconds']:.1f} s: {result['create_error']}")
        print(f"   it had created {result['runs']} runs anyway (the client got no key for them); following those:")
    else:
        print(f"   create call: {result['create_seconds']:.1f} s for {result['keys']} distinct keys"
              f" ({result['keys'] / result['create_seconds']:.1f} runs created/s)")
    if ended:
        span = ended[-1] - start
        middle = ended[len(ended) // 10: max(len(ended) // 10 + 1, len(ended) * 9 // 10)]
        steady = (len(middle) - 1) / (middle[-1] - middle[0]) if len(middle) > 1 and middle[-1] > middle[0] else float("nan")
        print(f"   all ended after {span:.1f} s (Prefect end times; client saw it after {last_seen - start:.1f} s,"
              f" 1 s polls): {len(ended) / span:.2f} tasks/s; steady rate (10th-90th percentile ends)"
              f" {steady:.2f} tasks/s")
        print(f"   first task ended {ended[0] - start:.1f} s after the create call began")
        figures = {"tasks/s": len(ended) / span, "steady tasks/s": steady}
    print(f"   outcomes: success {outcomes.get('success', 0)}, error {outcomes.get('error', 0)},"
          f" unfinished at timeout {len(result['pending'])}, lost (keys missing) {count - result['keys']}")
    errors = Counter(str(err)[:120] for status, _, err in final.values() if status == "error")
    for message, n in errors.most_common(3):
        print(f"     error x{n}: {message}")
    print(f"   {cpu_line(used, wall)}")
    figures["succeeded"] = outcomes.get("success", 0)
    return {**figures, **print_server_cost(used, calls, max(1, result["runs"]))}


def print_server_cost(used: dict[str, float], calls: list[Call], tasks: int, top: int = 10) -> dict[str, float]:
    """What the Prefect server spends per task: CPU ms of every Prefect server process (from
    ``used``, CPU seconds by group), the HTTP calls it answered (``calls``) by route, and
    the tasks/s one server core would carry at that cost."""
    server = {name: seconds for name, seconds in used.items() if name.startswith("prefect")}
    cpu_ms = 1000 * sum(server.values()) / tasks
    print(f"   server cost per task ({tasks} tasks): {cpu_ms:.0f} ms of Prefect-server CPU"
          f" ({', '.join(f'{n} {v:.1f} s' for n, v in server.items())}), {len(calls) / tasks:.1f} Prefect API calls"
          f" ({sum(c.status == 503 for c in calls)} answered 503); projected"
          f" {1000 / cpu_ms if cpu_ms else float('inf'):.1f} tasks/s per server core")
    if not calls:
        print(f"   no calls in the access log: do the Prefect API processes run deployments.prefect_server"
              f" with {ACCESS_LOG}?")
    routes: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        routes[call.name].append(call)
    print(f"   Prefect API calls by route (top {min(top, len(routes))} of {len(routes)};"
          " calls per task, median server ms, server s in all):")
    for name, group in sorted(routes.items(), key=lambda kv: -len(kv[1]))[:top]:
        durations = [c.duration for c in group]  # NaN: not logged (uvicorn's access lines)
        total = sum(durations)
        print(f"     {name:62s} {len(group) / tasks:5.2f}  {ms(statistics.median(durations), 1)}"
              f"  {'     —' if math.isnan(total) else f'{total:6.1f}'}")
    per_process = {f"CPU ms/task, {name}": 1000 * seconds / tasks for name, seconds in server.items()}
    return {"server CPU ms/task": cpu_ms, "API calls/task": len(calls) / tasks, **per_process}


# --- 3. ceiling ------------------------------------------------------------------------------


async def ceiling(runs: int, concurrency: int, deployment_id) -> tuple[float, int]:
    """Runs/s when ``concurrency`` clients each create runs and push them to Completed."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.states import Completed, Pending, Running

    parameters = {"params": {"name": "ceiling", "delay": 0, "url_callback": None, "url_errback": None,
                             "task_store": None}, "account": "local"}
    rejected = 0

    async def client_loop(n: int) -> None:
        nonlocal rejected
        async with get_client() as client:
            for _ in range(n):
                run = await client.create_flow_run_from_deployment(
                    deployment_id, parameters=parameters, tags=["hello", "account:local"])
                for state in (Pending(), Running(), Completed()):
                    answer = await client.set_flow_run_state(run.id, state)
                    if answer.state is None or answer.state.type != state.type:
                        rejected += 1

    share = [runs // concurrency + (1 if i < runs % concurrency else 0) for i in range(concurrency)]
    start = time.perf_counter()
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 1000}):  # count 503s, never give up
        await asyncio.gather(*(client_loop(n) for n in share))
    return runs / (time.perf_counter() - start), rejected


async def ceiling_deployment():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from deployments.register import WORKER_TYPE

    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=CEILING_POOL, type=WORKER_TYPE))
        flow_id = await client.create_flow_from_name("hello")
        return await client.create_deployment(
            flow_id=flow_id, name="ceiling", work_pool_name=CEILING_POOL, entrypoint="flows.hello:hello",
            enforce_parameter_schema=False,
        )


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=TOPOLOGIES, default="sqlite",
                        help="sqlite: the embedded Prefect server; scale: PostgreSQL + Redis + Prefect API"
                             " processes (--api-processes) + 1 services process + 2 workers.")
    parser.add_argument("--api-processes", type=int, default=2, help="Prefect API processes of the scale topology.")
    parser.add_argument("--postgres", action="store_true", help="sqlite topology's server on PostgreSQL instead.")
    parser.add_argument("--no-step-tasks", action="store_true",
                        help="Service with DRAGONFLOW_STEP_TASKS=false (steps as plain calls) to measure their cost.")
    parser.add_argument("--baseline", metavar="REV",
                        help="Also measure commit REV (a temporary git worktree), side by side: latency and"
                             " throughput only, alternating with this checkout for --rounds rounds.")
    parser.add_argument("--rounds", type=int, default=1, help="Rounds of baseline + this checkout (--baseline).")
    parser.add_argument("--candidate", metavar="REV", help="With --baseline: measure commit REV in place of this checkout.")
    parser.add_argument("--runs", type=int, default=60, help="Timed latency runs (ours).")
    parser.add_argument("--stock-runs", type=int, default=10, help="Timed latency runs of the stock path.")
    parser.add_argument("--stock-poll", type=int, default=1, help="Stock runner poll interval, s (Prefect: 10).")
    parser.add_argument("--census-runs", type=int, default=5, help="Extra runs each for counting API calls.")
    parser.add_argument("--tasks", type=int, default=500, help="image.thumb tasks in the throughput case.")
    parser.add_argument("--throughput-timeout", type=float, default=900)
    parser.add_argument("--ceiling-runs", type=int, default=200, help="Runs per concurrency level.")
    parser.add_argument("--skip", nargs="*", default=[], choices=["latency", "throughput", "ceiling"])
    parser.add_argument("--keep-logs", type=Path, help="Copy the access log and the processes' logs here.")
    args = parser.parse_args()
    if args.candidate and not args.baseline:
        parser.error("--candidate is measured against a --baseline")
    if args.postgres and args.topology != "sqlite":
        parser.error("--postgres is for the sqlite topology (scale runs on PostgreSQL)")
    TOPOLOGIES["scale"]["api_processes"] = args.api_processes

    os.environ["DRAGONFLOW_FETCH_ALLOW"] = "127.0.0.1"  # this process fetches and runs flows too (part 4)
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}; load average at start {load()}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestration-")))
        files = tmp / "files"
        files.mkdir()
        small = jpeg_near(files / "small.jpg", 100_000)
        names = thumb_inputs(files, args.tasks)
        base = stack.enter_context(serve_directory(files))
        print(f"inputs: image.info on a {small.stat().st_size / 1000:.0f} KB {'x'.join(map(str, Image.open(small).size))} JPEG;"
              f" thumbs from 20 JPEGs of 1.0-2.0 MP")
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        checkouts = [(f"this checkout ({head}{'+changes' if dirty() else ''})", ROOT)]
        if args.baseline and args.candidate:
            checkouts = [(f"candidate {args.candidate}", stack.enter_context(worktree(args.candidate, tmp / "candidate")))]
        if args.baseline:
            checkouts.insert(0, (f"baseline {args.baseline}", stack.enter_context(worktree(args.baseline, tmp / "baseline"))))
            args.stock_runs, args.skip = 0, [*args.skip, "ceiling"]
        figures: dict[str, list[dict[str, float]]] = defaultdict(list)
        for round_ in range(args.rounds if args.baseline else 1):
            for label, root in checkouts:
                print(f"\n=== {label}" + (f", round {round_ + 1} of {args.rounds}" if args.baseline else "") + f"; load {load()}")
                home = tmp / f"home-{len(figures[label])}-{root.name}"
                figures[label].append(measure(args, root, home, files, small, names, base, full=not args.baseline))
        if args.baseline:
            print_side_by_side(figures)
        print(f"\nload average at end {load()}")


def dirty() -> bool:
    return bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip())


@contextmanager
def worktree(rev: str, path: Path) -> Iterator[Path]:
    """Commit ``rev`` checked out at ``path`` (a detached git worktree), removed after."""
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), rev], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def measure(args: argparse.Namespace, root: Path, home: Path, files: Path, small: Path, names: list[str], base: str,
            full: bool) -> dict[str, float]:
    """Start the service from checkout ``root`` in ``home`` and run the cases; their figures
    (``full``: also the stock path, the census of calls, where the time goes, the ceiling)."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    figures: dict[str, float] = {}
    with ExitStack() as stack:
        env, roots = {}, []
        if args.postgres:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"], postmaster = stack.enter_context(postgres_cluster())
            roots.append(postmaster)
        if args.no_step_tasks:
            env["DRAGONFLOW_STEP_TASKS"] = "false"
        if args.keep_logs:  # runs last, once every process has stopped
            stack.callback(keep_logs, args.keep_logs / home.name if args.baseline else args.keep_logs, home)
        service = stack.enter_context(start_service(home, args.topology, root=root, **env))
        os.environ["DRAGONFLOW_HOME"] = str(home.parent / "bench-home")  # scratch dirs of the in-process runs
        groups = partial(service_groups, service, *roots)
        database = "PostgreSQL (Debian, default settings)" if args.postgres or args.topology == "scale" else "SQLite"
        print(f"database: {database}; topology {args.topology}: {', '.join(groups())}")
        stack.enter_context(temporary_settings({**prefect_settings(service), PREFECT_CLIENT_MAX_RETRIES: 20}))

        if "latency" not in args.skip:
            runner = stack.enter_context(stock_runner(service, args.stock_poll)) if full else None
            ours, theirs = asyncio.run(latency(service, f"{base}/small.jpg", args.runs, args.stock_runs, runner))
            figures.update(print_latency(ours, theirs, args.stock_poll))
            figures["events/task"] = print_events(asyncio.run(count_events([r.run_id for r in ours[-5:]])))
            if full:
                steps = in_process_steps(f"{base}/small.jpg")
                print_phases(ours, theirs, steps, home)
                if args.census_runs:
                    with PortOwners(prefect_ports(groups()), partial(census_groups, groups, runner)) as owners:
                        census_ours, census_stock = asyncio.run(
                            latency(service, f"{base}/small.jpg", args.census_runs, args.census_runs, runner))
                    print_calls(census_ours, owners.owners, home, "ours")
                    print_calls(census_stock, owners.owners, home, "stock")
                stop_process(runner, signal.SIGINT)

        if "throughput" not in args.skip:
            meter = CpuMeter(groups)
            meter.start()
            before = database_megabytes(home)
            result = asyncio.run(throughput(service, base, names, args.throughput_timeout))
            figures.update(print_throughput(result, args.tasks, *meter.used(), read_trace(home, result["start"], time.time())))
            figures["database KB/task"] = 1000 * (database_megabytes(home) - before) / args.tasks
            print(f"   SQLite database: {before:.1f} MB before, {database_megabytes(home):.1f} MB after"
                  f" ({figures['database KB/task']:.1f} KB per task)")

        if "ceiling" not in args.skip:
            deployment_id = asyncio.run(ceiling_deployment())
            print("\n3. Ceiling: flow runs the Prefect server alone records per second (create from a deployment,"
                  " then Pending, Running, Completed; Prefect's client, this process)")
            for concurrency in (1, 4, 8):
                meter = CpuMeter(groups)
                meter.start()
                start = time.time()
                rate, rejected = asyncio.run(ceiling(args.ceiling_runs, concurrency, deployment_id))
                calls = read_trace(home, start, time.time())
                busy = sum(1 for c in calls if c.status == 503)
                print(f"   {concurrency} client(s): {rate:6.1f} runs/s ({args.ceiling_runs} runs, {len(calls)} calls,"
                      f" {busy} answered 503 and retried; {rejected} transitions not accepted)")
                print(f"     {meter.read()}")
    return figures


def database_megabytes(home: Path) -> float:
    """Size of the service's Prefect database (the SQLite file and its WAL), NaN when not SQLite."""
    files = [home / "prefect" / name for name in ("prefect.db", "prefect.db-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6 if files[0].exists() else math.nan


def print_side_by_side(figures: dict[str, list[dict[str, float]]]) -> None:
    """The figures of each checkout (medians over its rounds), and this checkout's ratio."""
    (before_label, before), (after_label, after) = figures.items()
    names = [name for name in after[0] if name in before[0]]
    print(f"\nSide by side (medians over {len(after)} round(s) each, measured alternately in this run):")
    print(f"   {'figure':34s} {before_label[:24]:>24s} {after_label[:30]:>30s}  ratio")
    for name in names:
        old = statistics.median(r[name] for r in before)
        new = statistics.median(r[name] for r in after)
        ratio = new / old if old else math.nan
        print(f"   {name:34s} {old:24.3f} {new:30.3f}  {ratio:5.2f}")


@contextmanager
def start_service(home: Path, topology: str, root: Path = ROOT, **env: str) -> Iterator[LocalService]:
    """The service in ``topology`` (``TOPOLOGIES``), its Prefect servers logging every HTTP
    request (``read_trace``): ours to ``ACCESS_FILE``; on the scale topology, ``prefect server
    start`` at log level INFO (uvicorn's access lines in its log)."""
    logging = {ACCESS_LOG: str(home / ACCESS_FILE)}
    if topology == "scale":
        logging["PREFECT_SERVER_LOGGING_LEVEL"] = "INFO"
    with LocalService(home, **TOPOLOGIES[topology], root=root, **logging, **env) as service:
        yield service


def prefect_settings(service: LocalService) -> dict:
    """Prefect client settings for the service's Prefect API (and its auth string, if any)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    settings = {PREFECT_API_URL: service.prefect_api}
    if "PREFECT_API_AUTH_STRING" in service.env:
        settings[PREFECT_API_AUTH_STRING] = service.env["PREFECT_API_AUTH_STRING"]
    return settings


def census_groups(groups: Callable[[], Groups], runner: subprocess.Popen) -> Groups:
    """The service's processes other than Prefect's, this process and the stock runner's tree."""
    found = {name: pids for name, pids in groups().items() if not name.startswith("prefect")}
    return {**found, "bench": [os.getpid()], "stock": [runner.pid, *descendants(runner.pid, process_table())]}


def keep_logs(directory: Path, home: Path) -> None:
    """Copy the service's logs and access log from ``home`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in [*home.glob("*.log"), home / ACCESS_FILE]:
        if path.exists():
            shutil.copy(path, directory / path.name)


if __name__ == "__main__":
    main()

"""VimQu whole-task speed: one ``vimqu.task`` (HLS + DASH, 360p/720p/1080p) from create to
completed on the running service, input and outputs on a local S3 server, against the best
hand-written ffmpeg command for the same ladder and the naive way (one ffmpeg per rung per
format), in the same run.

Set-up: ``dragonflow up`` in a temporary home (``LocalService``: SQLite Prefect server, warm
worker, API) with ``DRAGONFLOW_X264_PRESET`` = ``--preset`` so every contender encodes with
the same x264 preset; moto's S3 server in this process; a generated 60 s 1920x1080 30 fps
clip (``bench/vimqu_ladder.make_source``), uploaded to the S3 storage as the task's input.

Contenders, ``--runs`` times each in turn (medians of wall time; CPU is not comparable: the
task's ffmpeg runs under the service's worker):

1. **task**: create the run from the ``vimqu.task`` deployment (as the VimQu API does) with two
   outputs to the S3 storage, ``hls`` and ``dash`` with the same ladder (one encode, both
   manifests over the same CMAF segments), then read the run every 0.1 s until it is final:
   fetch from S3, probe, encode, upload every file (both outputs), the result recorded.
2. **best single command** (``bench/vimqu_ladder.best_command``): one ffmpeg, decode once,
   ``split=3``, three libx264 encodes, CMAF + MPD + HLS playlists, local file in, local files
   out (no storage). Target: task / best <= 1.2.
3. **naive** (``bench/vimqu_ladder.naive_commands``): 3 × HLS + 3 × DASH ffmpegs in turn.

Prints the ffmpeg version, both ratios, where the last task's time went (its steps' task
runs: fetch, probe, package, each upload) and which decode strategy the engine uses (see
``bench/vimqu_ladder.py`` for that measurement).

Run: .venv/bin/python bench/vimqu_task.py [--runs 1] [--seconds 60] [--preset veryfast]
Not a test.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vimqu_ladder import best_command, make_source, naive_commands, run_all  # noqa: E402
from deployments.local import LocalService  # noqa: E402

ACCOUNT = "local"
SEGMENT = 4
BUCKET = "vimqu-bench"


def start_s3():
    """moto's S3 server in a thread, with ``BUCKET``: (server, storage payload)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    payload = {"name": "bench s3", "driver": "s3", "bucket": BUCKET, "region": "eu-west-1",
               "endpoint_url": f"http://{host}:{port}", "access_key_id": "bench",
               "secret_access_key": "bench-secret"}
    boto3.client("s3", endpoint_url=payload["endpoint_url"], region_name="eu-west-1", aws_access_key_id="bench",
                 aws_secret_access_key="bench-secret").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return server, payload


async def step_times(client, run_id) -> list[tuple[str, float]]:
    """(task run name, seconds) of the steps of the run and of its subflows, by start time."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
    runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
        id=FlowRunFilterId(any_=[run_id, *(c.id for c in children)])))
    timed = [(r.start_time, r.name, (r.end_time - r.start_time).total_seconds()) for r in runs
             if r.start_time and r.end_time]
    return [(name, seconds) for _, name, seconds in sorted(timed)]


async def run_task(params: dict) -> tuple[float, dict, list[tuple[str, float]]]:
    """Create the task and wait for its end: (wall seconds, rendered result, step times)."""
    from prefect.client.orchestration import get_client

    from flows.contract.runs import read_runs, run_tags
    from flows.contract.vimqu import vimqu_task as render
    from flows.outputs.task import TASK_NAME

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{TASK_NAME}/{TASK_NAME}")
        started = time.perf_counter()
        flow_run = await client.create_flow_run_from_deployment(
            deployment.id, parameters={"params": params, "account": ACCOUNT},
            tags=run_tags(TASK_NAME, ACCOUNT, "vimqu"))
        while True:
            state = (await client.read_flow_run(flow_run.id)).state
            if state and state.is_final():
                break
            await asyncio.sleep(0.1)
        wall = time.perf_counter() - started
        view = (await read_runs(client, [flow_run.id]))[flow_run.id]
        steps = await step_times(client, flow_run.id)
    return wall, render(view), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=60, help="length of the generated 1080p source")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of every contender")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(version)
    print(f"cores: {os.cpu_count()}, load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())},"
          f" x264 preset for all: {args.preset}, source: {args.seconds} s 1080p30")

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.registered import RegisteredStorage, save_registered

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_source(tmp / "source-1080p.mp4", args.seconds)
        s3_server, payload = start_s3()
        try:
            with LocalService(tmp / "home", DRAGONFLOW_X264_PRESET=args.preset) as service, \
                    temporary_settings({PREFECT_API_URL: service.prefect_api}):
                storage = RegisteredStorage.from_api(payload, account=ACCOUNT)
                asyncio.run(save_registered(storage))
                asyncio.run(storage.put(src, "/inputs/source-1080p.mp4"))
                snapshot = {"id": storage.storage_id, "name": storage.name, "driver": storage.driver}
                ladder = {"variants": ["360p", "720p", "1080p"], "segment_duration": SEGMENT, "audio_bitrate": 128}

                def params() -> dict:
                    tag = uuid.uuid4().hex[:8]
                    return {"input": {"source_type": "storage", "storage_id": storage.storage_id,
                                      "path": "/inputs/source-1080p.mp4"},
                            "outputs": [{"id": str(uuid.uuid4()), "storage_id": storage.storage_id,
                                         "storage": snapshot, "target_path": f"/bench/{tag}/{kind}", "type": kind,
                                         "type_specific_config": ladder} for kind in ("hls", "dash")]}

                def fresh(name: str) -> Path:
                    path = tmp / name
                    shutil.rmtree(path, ignore_errors=True)
                    path.mkdir()
                    return path

                results: list[tuple[dict, list]] = []

                def task() -> float:
                    wall, data, steps = asyncio.run(run_task(params()))
                    assert data["status"] == "completed", data
                    results.append((data, steps))
                    return wall

                def command(commands) -> float:
                    started = time.perf_counter()
                    run_all(commands, parallel=False)
                    return time.perf_counter() - started

                contenders = {
                    "task (create -> completed, S3)": task,
                    "best single command": lambda: command([best_command(src, fresh("best"), args.preset)]),
                }
                if not args.skip_naive:
                    contenders["naive (per rung per format)"] = lambda: command(
                        naive_commands(src, fresh("naive"), args.preset))
                times: dict[str, list[float]] = {name: [] for name in contenders}
                for run in range(args.runs):
                    for name, fn in contenders.items():
                        times[name].append(fn())
                        print(f"  run {run + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
        finally:
            s3_server.stop()

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{'median of ' + str(args.runs) + ' run(s)':34s} {'wall':>8s}")
    for name, value in med.items():
        print(f"{name:34s} {value:7.1f}s")
    ours, best = med["task (create -> completed, S3)"], med["best single command"]
    print(f"\ntask / best single command = {ours / best:.2f}   (target <= 1.2)")
    if "naive (per rung per format)" in med:
        naive = med["naive (per rung per format)"]
        print(f"task / naive               = {ours / naive:.2f}   (naive takes {naive / ours:.2f}x the task)")
    data, steps = results[-1]
    files = sum(len(o["files"]) for o in data["outputs"])
    print(f"files uploaded per task: {files} (hls + dash over the same segments, one encode)")
    print("the last task's steps (task runs, by start):")
    for name, seconds in steps:
        print(f"  {name:48s} {seconds:6.2f} s")
    print("decode strategy of the engine: decode once + split (flows/outputs/package.py;"
          " measured by bench/vimqu_ladder.py)")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

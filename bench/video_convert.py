"""video.convert overhead: the whole task next to the same ffmpeg arguments run directly.

A generated 20 s 720p clip (testsrc2 + a tone, 25 fps) is converted to 360p (640×360, the
task's defaults otherwise: H.264 crf 23 capped at 3000 kbps, AAC 128 kbps 44.1 kHz):
1. through the whole task: ``POST /v2/create`` with ``block=true`` until ``success``, against
   a service started here (fetch over local HTTP, probe, ffmpeg with progress, probe of the
   output, store, status), and
2. directly: ``ffmpeg`` with the arguments the task builds (``transcode_args``) on the local file,
alternately, in one run. Prints both medians and their ratio (target: task / direct <= 1.15),
and, from the task's status events, how long it waited for the worker and how long the flow
run took.

Run: .venv/bin/python bench/video_convert.py [--runs 7]. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

from deployments.local import LocalService
from flows.steps.video.encode import Encoding, transcode_args
from flows.steps.tools.probe import probe_media

SIZE = (640, 360)


def make_source(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=20",
         "-f", "lavfi", "-i", "sine=f=440:d=20:r=48000", "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast",
         "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path


def direct_command(src: Path, dest: Path) -> list[str]:
    """The ffmpeg command the task runs, without its progress reporting."""
    probe = asyncio.run(probe_media(src))
    args = transcode_args(src, probe, dest, SIZE, crop=False, encoding=Encoding(video_bitrate=3000))
    return ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_source(tmp / "clip-720p-20s.mp4")
        print(f"source: 1280x720 25 fps 20 s, {src.stat().st_size / 2**20:.1f} MiB; converted to {SIZE[0]}x{SIZE[1]}")
        files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp)))
        threading.Thread(target=files.serve_forever, daemon=True).start()
        task = {"task_name": "video.convert", "url": f"http://127.0.0.1:{files.server_address[1]}/{src.name}",
                "width": SIZE[0], "height": SIZE[1]}
        command = direct_command(src, tmp / "direct.mp4")
        times: dict[str, list[float]] = {"task": [], "direct": [], "queued -> started": [], "started -> completed": []}
        with LocalService(tmp / "home") as service, httpx.Client(base_url=service.api, timeout=600) as api:
            body = {"secret": service.account["secret"], "tasks": task, "block": True}

            def run_task() -> None:
                [status] = api.post("/v2/create", json=body).json()
                assert status["status"] == "success", status
                at = {name: datetime.fromisoformat(value) for name, value in status["events"].items()}
                times["queued -> started"].append((at["started"] - at["queued"]).total_seconds())
                times["started -> completed"].append((at["completed"] - at["started"]).total_seconds())

            run_task()  # warm-up: the worker imports the flow
            times["queued -> started"].clear()
            times["started -> completed"].clear()
            for _ in range(args.runs):
                for name, run in (("task", run_task), ("direct", lambda: subprocess.run(command, check=True))):
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
        files.shutdown()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"  {name:20s} median {value:6.2f} s over {args.runs} runs"
              f" (min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    print(f"  ratio task / direct: {medians['task'] / medians['direct']:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()

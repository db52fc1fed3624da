"""video.reverse memory: peak RSS while reversing a 10-minute 720p input.

A generated 10-minute 1280×720 25 fps H.264 + AAC file (a 20 s testsrc2 clip looped, its
video by stream copy) is reversed at full size by the task's step (``reverse_video``: segments of
a few seconds, each decoded from a seek, reversed and encoded, then joined). Prints the
wall time, the segment length, the peak resident memory of the largest ffmpeg process and of
this process, and the peak sum over this process and its children sampled every 0.2 s
(target <= 1 GB). ffmpeg's ``reverse`` filter on the whole input would hold all 15,000
decoded frames: about 20 GiB.

Run: .venv/bin/python bench/video_reverse.py [--minutes 10]. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from flows.steps.video.encode import Encoding
from flows.steps.tools.probe import probe_media
from flows.steps.video.reverse import reverse_video, segment_seconds

SIZE = (1280, 720)


def make_source(tmp: Path, minutes: float) -> Path:
    clip, long = tmp / "clip.mp4", tmp / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={SIZE[0]}x{SIZE[1]}:r=25:d=20",
         "-f", "lavfi", "-i", "sine=f=440:d=20:r=48000", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
         "-g", "250", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )
    loops = round(minutes * 3) - 1
    # video copied; audio re-encoded, so that its timestamps run on without overlaps at the joins
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(clip), "-c:v", "copy",
                    "-c:a", "aac", str(long)], check=True)
    return long


def tree_rss_kib() -> int:
    """Resident memory of this process and its direct children, in KiB."""
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:  # a thread that just ended
            pass
    total = 0
    for pid in pids:
        try:
            total += next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


async def main(minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = make_source(tmp, minutes)
        probe = await probe_media(src)
        print(f"source: {probe.duration:.1f} s {SIZE[0]}x{SIZE[1]} 25 fps with audio,"
              f" {src.stat().st_size / 2**20:.0f} MiB; segments of {segment_seconds(SIZE, 25.0):.1f} s")
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_rss_kib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        dest = tmp / "out" / "reversed.mp4"
        dest.parent.mkdir()
        start = time.perf_counter()
        kbps = (probe.video.bit_rate or 0) // 1000 or None
        await reverse_video.fn(src, probe, dest, SIZE, crop=False, encoding=Encoding(video_bitrate=kbps))
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        out = await probe_media(dest)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  reversed in {elapsed:.0f} s (speed {probe.duration / elapsed:.2f}x real time); output {out.duration:.1f} s")
    print(f"  peak RSS: largest ffmpeg {children:.0f} MiB, this process {own:.0f} MiB,"
          f" sampled total {peak[0] / 1024:.0f} MiB (target <= 1024 MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().minutes))

"""video.thumb seeking: a frame at 10 s vs one at 1 h 50 min of a 2-hour file.

A generated 2-hour low-bitrate H.264 file (640×360, 25 fps, a key frame every 10 s: a
60 s testsrc2 clip looped by stream copy) is thumbnailed as the task does it after the
download (probe, seek + decode one frame scaled to 320 px, JPEG) at 10 s and at 6600 s,
alternately. Prints both medians, their ratio (target <= 1.5) and the absolute time at
1 h 50 min (target <= 1.5 s).

Run: .venv/bin/python bench/video_seek.py [--runs 7]. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from flows.steps.video.frames import grab_frame, save_frame
from flows.steps.tools.probe import probe_media
from flows.steps.video.scaling import output_size

TIMES = {"10 s": 10.0, "1 h 50 min": 6600.0}


def make_source(tmp: Path) -> Path:
    clip, long = tmp / "minute.mp4", tmp / "two-hours.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=60",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "35", "-g", "250", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "119", "-i", str(clip), "-c", "copy", str(long)],
                   check=True)
    return long


async def thumbnail(src: Path, at: float, out: Path) -> None:
    """What video.thumb does once the input is local."""
    probe = await probe_media(src)
    size = output_size(probe.video.upright_size, 320, None, False)
    frame = await grab_frame(src, probe, at, size, crop=False)
    await asyncio.to_thread(save_frame, frame, out, "jpeg", quality=75)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = make_source(Path(tmp))
        probe = await probe_media(src)
        print(f"source: {probe.duration / 3600:.2f} h, {src.stat().st_size / 2**20:.0f} MiB"
              f" ({probe.bit_rate / 1000:.0f} kbps), 640x360 25 fps, key frame every 10 s")
        times: dict[str, list[float]] = {name: [] for name in TIMES}
        await thumbnail(src, 10.0, Path(tmp) / "out")  # warm-up
        for _ in range(runs):
            for name, at in TIMES.items():
                start = time.perf_counter()
                await thumbnail(src, at, Path(tmp) / "out")
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"  thumb at {name:11s} median {value * 1000:6.0f} ms over {runs} runs"
              f" (min {min(times[name]) * 1000:.0f}, max {max(times[name]) * 1000:.0f})")
    print(f"  ratio 1 h 50 min / 10 s: {medians['1 h 50 min'] / medians['10 s']:.2f} (target <= 1.5);"
          f" at 1 h 50 min: {medians['1 h 50 min']:.2f} s (target <= 1.5 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    asyncio.run(main(parser.parse_args().runs))

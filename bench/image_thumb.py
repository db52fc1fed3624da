"""image.thumb speed: our transform step next to ``pyvips.Image.thumbnail`` in the same run,
then the whole task through the API.

1. A generated 6000×4000 JPEG is thumbnailed to 320 px wide (JPEG out, quality 85, no
   metadata) by ``flows.steps.image.imaging.make_thumbnail`` and by ``pyvips.Image.thumbnail``
   (libvips' operation cache off), alternately; prints both medians and their ratio
   (target: ours / pyvips ≤ 1.2).
2. Our peak RSS for one such thumbnail, in a fresh process (``--rss``).
3. The whole task through the API: ``POST /v2/create`` with ``block=true`` until ``success``,
   against a service started here (``dragonflow up`` in a temporary home), median of 20 runs.

Run: .venv/bin/python bench/image_thumb.py [--runs 15] [--api-runs 20]
Needs pyvips (``pip install pyvips pyvips-binary``: libvips comes in the wheel). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image, ImageFilter

from deployments.local import ROOT, LocalService, serve_directory

SIZE = (6000, 4000)
WIDTH = 320


def make_source(path: Path) -> Path:
    """A photo-like 6000×4000 JPEG: smooth colour gradients with fine grain and some edges."""
    small = Image.merge("RGB", [
        Image.linear_gradient("L").resize((600, 400)),
        Image.radial_gradient("L").resize((600, 400)),
        Image.effect_noise((600, 400), 60).filter(ImageFilter.GaussianBlur(3)),
    ])
    big = small.resize(SIZE, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(SIZE, 12).convert("RGB")
    Image.blend(big, grain, 0.15).save(path, quality=90)
    return path


def ours(src: Path, out: Path) -> None:
    from flows.steps.image.imaging import make_thumbnail

    make_thumbnail(src, out, width=WIDTH, height=None)


def theirs(src: Path, out: Path) -> None:
    import pyvips

    pyvips.Image.thumbnail(str(src), WIDTH).write_to_file(str(out / "vips.jpg"), Q=85, strip=True)


def side_by_side(src: Path, runs: int) -> None:
    import pyvips

    pyvips.cache_set_max(0)  # no reuse of a previous run's result
    times: dict[str, list[float]] = {"ours (Pillow, draft + LANCZOS)": [], "pyvips.Image.thumbnail": []}
    with tempfile.TemporaryDirectory() as out:
        for fn in (ours, theirs):  # warm-up: imports, first decode
            fn(src, Path(out))
        for _ in range(runs):
            for name, fn in zip(times, (ours, theirs)):
                start = time.perf_counter()
                fn(src, Path(out))
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"  {name:32s} median {value * 1000:7.1f} ms over {runs} runs")
    ratio = medians["ours (Pillow, draft + LANCZOS)"] / medians["pyvips.Image.thumbnail"]
    print(f"  ratio ours / pyvips: {ratio:.2f} (target <= 1.2)")


def peak_rss(src: Path) -> None:
    """In a fresh process: resident memory after imports, and its peak during one thumbnail
    (the peak is reset first through /proc/self/clear_refs, so import-time peaks do not count)."""
    code = f"""
import sys, tempfile
from pathlib import Path
import flows.steps.image.imaging as imaging

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

before = kib("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
imaging.make_thumbnail(Path(sys.argv[1]), Path(tempfile.mkdtemp()), width={WIDTH}, height=None)
print(before, kib("VmHWM:"))
"""
    before, peak = map(int, subprocess.check_output([sys.executable, "-c", code, str(src)], cwd=ROOT).split())
    full = SIZE[0] * SIZE[1] * 3 / 2**20
    print(f"  our peak RSS: {peak / 1024:.0f} MiB, {(peak - before) / 1024:.0f} MiB above the {before / 1024:.0f} MiB"
          f" after imports (the whole image decoded would take {full:.0f} MiB)")


def through_the_api(src: Path, runs: int) -> None:
    with tempfile.TemporaryDirectory() as home, serve_directory(src.parent) as files:
        with LocalService(Path(home)) as service:
            task = {"task_name": "image.thumb", "url": f"{files}/{src.name}", "width": WIDTH}
            body = {"secret": service.account["secret"], "tasks": task, "block": True}
            times = []
            with httpx.Client(base_url=service.api, timeout=120) as api:
                for i in range(runs + 1):
                    start = time.perf_counter()
                    [status] = api.post("/v2/create", json=body).json()
                    elapsed = time.perf_counter() - start
                    assert status["status"] == "success", status
                    if i:  # the first run warms the worker up
                        times.append(elapsed)
            print(f"  create -> success: median {statistics.median(times) * 1000:.0f} ms over {runs} runs"
                  f" (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--api-runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = make_source(Path(tmp) / "photo-6000x4000.jpg")
        print(f"source: {SIZE[0]}×{SIZE[1]} JPEG, {src.stat().st_size / 2**20:.1f} MiB; thumbnail {WIDTH} px wide")
        print("transform step, same process:")
        side_by_side(src, args.runs)
        peak_rss(src)
        print("whole task through the API (block=true):")
        through_the_api(src, args.api_runs)


if __name__ == "__main__":
    main()

"""VimQu ladder speed: our HLS + DASH engine against the best hand-written ffmpeg command and
the naive way, the decode-once vs decode-per-rung measurement, and thumbnails' seek vs one pass.

Input: a generated 60 s 1920x1080 30 fps clip (lavfi testsrc2 + a 440 Hz tone, H.264 veryfast
crf 20 + AAC; or ``--source FILE``). Ladder: 360p / 720p / 1080p of the built-in ladder
(800 / 2800 / 5000 kbps, 4 s segments, AAC 128 kbps), HLS + DASH. Contenders, run in turn
in the same process, ``--runs`` times each (medians):

Every run starts with the next contender (run 1: ours first). CPU seconds (of the ffmpeg /
ffprobe processes) are printed next to wall seconds: on a machine shared with other work they
are the steadier measure.

1. **ours**: ``probe_media`` + ``flows.outputs.package.package_streams`` (one ffmpeg: decode
   once, split, 3 × libx264, CMAF segments + MPD; then the files renamed per rung and the HLS
   playlists written from the MPD's timeline and the segment sizes).
2. **best single command** (hand-written): one ffmpeg, ``split=3``, the same three encodes with
   the same GOP / rate settings, to the ``dash`` muxer with ``-hls_playlist 1`` — CMAF
   segments, the MPD and the HLS playlists in one go. Target: ours / best <= 1.2.
3. **naive**: one ffmpeg per rung per format, one after another: 3 × HLS (``-f hls``, MPEG-TS
   segments) + 3 × DASH (``-f dash``), each decoding the input again.

Decode strategy: best single command (decode once, split) against one ffmpeg per rung all at
once (three CMAF outputs, decoding the input three times; the manifests would then have to be
merged) — whichever is faster on this machine is the engine's choice.

Thumbnails: 20 frames of the same file (``count=20``) by ``make_thumbnails`` with a seek before
each frame (2 at a time) against one ffmpeg pass decoding the whole file (``select``), and
which one its ``auto`` strategy picks.

The x264 preset is the same for every contender: ``--preset`` (default ``veryfast``; the
service's setting ``x264_preset`` is ``medium``, which takes minutes per contender here).
The whole-task comparison (through the API and an S3 storage) is the VimQu flow's bench.

Run: .venv/bin/python bench/vimqu_ladder.py [--runs 1] [--preset veryfast] [--source clip.mp4]
Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from flows.outputs.config import parse_output_config
from flows.outputs.package import package_streams
from flows.outputs.thumbnails import make_thumbnails
from flows.steps.tools.probe import probe_media

RUNGS = [("360p", 640, 360, 800), ("720p", 1280, 720, 2800), ("1080p", 1920, 1080, 5000)]
SEGMENT = 4
GOP = 30 * SEGMENT
ENCODE = ["-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", "-forced-idr", "1",
          "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT})", "-profile:v", "high", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: str) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args]


def make_source(path: Path, seconds: int) -> Path:
    subprocess.run(ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}",
                          "-f", "lavfi", "-i", f"sine=f=440:d={seconds}:r=48000", "-ac", "2",
                          "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                          "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)), check=True)
    return path


def rate(i: int, kbps: int) -> list[str]:
    return [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{int(kbps * 1.1)}k", f"-bufsize:v:{i}", f"{2 * kbps}k"]


def best_command(src: Path, out: Path, preset: str) -> list[str]:
    """The hand-written single command: decode once, split, 3 encodes, CMAF + MPD + HLS."""
    graph = "[0:v]split=3[a][b][c];" + ";".join(
        f"[{s}]scale={w}:{h},setdar=16/9[v{i}]" for i, (s, (_, w, h, _)) in enumerate(zip("abc", RUNGS)))
    maps = [x for i, (*_, kbps) in enumerate(RUNGS) for x in ("-map", f"[v{i}]", *rate(i, kbps))]
    return ffmpeg("-i", str(src), "-filter_complex", graph, *maps, "-map", "0:a",
                  "-c:v", "libx264", "-preset", preset, *ENCODE, "-c:a", "aac", "-b:a", "128k", "-ac", "2",
                  "-f", "dash", "-seg_duration", str(SEGMENT), "-use_template", "1", "-use_timeline", "1",
                  "-hls_playlist", "1", "-adaptation_sets", "id=0,streams=v id=1,streams=a",
                  str(out / "manifest.mpd"))


def per_rung_commands(src: Path, out: Path, preset: str) -> list[list[str]]:
    """One ffmpeg per rung (CMAF + MPD each), the audio with the first: decode per rung."""
    commands = []
    for i, (name, w, h, kbps) in enumerate(RUNGS):
        (out / name).mkdir(parents=True, exist_ok=True)
        audio = ["-map", "0:a", "-c:a", "aac", "-b:a", "128k", "-ac", "2"] if i == 0 else ["-an"]
        commands.append(ffmpeg("-i", str(src), "-map", "0:v", "-vf", f"scale={w}:{h}", *rate(0, kbps), *audio,
                               "-c:v", "libx264", "-preset", preset, *ENCODE, "-f", "dash",
                               "-seg_duration", str(SEGMENT), "-hls_playlist", "1",
                               str(out / name / "manifest.mpd")))
    return commands


def naive_commands(src: Path, out: Path, preset: str) -> list[list[str]]:
    """One ffmpeg per rung per format, each a full decode + encode."""
    commands = []
    for name, w, h, kbps in RUNGS:
        common = ["-i", str(src), "-vf", f"scale={w}:{h}", "-c:v", "libx264", "-preset", preset, *rate(0, kbps),
                  *ENCODE, "-c:a", "aac", "-b:a", "128k", "-ac", "2"]
        (out / "hls" / name).mkdir(parents=True, exist_ok=True)
        (out / "dash" / name).mkdir(parents=True, exist_ok=True)
        commands.append(ffmpeg(*common, "-f", "hls", "-hls_time", str(SEGMENT), "-hls_playlist_type", "vod",
                               str(out / "hls" / name / "index.m3u8")))
        commands.append(ffmpeg(*common, "-f", "dash", "-seg_duration", str(SEGMENT),
                               str(out / "dash" / name / "manifest.mpd")))
    return commands


CPU: dict[str, list[float]] = {}


def timed(fn, name: str | None = None) -> float:
    """Wall seconds of ``fn()``; the CPU seconds of the processes it ran go to ``CPU[name]``
    (less sensitive than wall time to the other load on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name:
        CPU.setdefault(name, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def run_all(commands: list[list[str]], *, parallel: bool) -> None:
    if parallel:
        processes = [subprocess.Popen(c) for c in commands]
        assert all(p.wait() == 0 for p in processes)
    else:
        for c in commands:
            subprocess.run(c, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--preset", default="veryfast", help="x264 preset of every contender")
    parser.add_argument("--seconds", type=int, default=60, help="length of the generated source")
    parser.add_argument("--source", type=Path, help="use this 1080p file instead of generating one")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(version)
    print(f"cores: {os.cpu_count()}, load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"
          f" {os.getloadavg()[2]:.2f}, x264 preset for all: {args.preset}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.source or make_source(tmp / "source-1080p.mp4", args.seconds)
        config = parse_output_config("hls", {"variants": ["360p", "720p", "1080p"], "segment_duration": SEGMENT,
                                             "audio_bitrate": 128})

        def fresh(name: str) -> Path:
            path = tmp / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            return path

        def ours() -> None:
            probe = asyncio.run(probe_media(src))
            result = asyncio.run(package_streams.fn(src, probe, config, fresh("ours"), formats=("hls", "dash"),
                                                    preset=args.preset))
            assert [r.name for r in result.rungs] == ["360p", "720p", "1080p"]

        contenders = {
            "ours": ours,
            "best single command": lambda: run_all([best_command(src, fresh("best"), args.preset)], parallel=False),
            "per-rung ffmpegs at once": lambda: run_all(per_rung_commands(src, fresh("per-rung"), args.preset),
                                                        parallel=True),
        }
        if not args.skip_naive:
            contenders["naive (per rung per format)"] = lambda: run_all(
                naive_commands(src, fresh("naive"), args.preset), parallel=False)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        src.read_bytes()  # the source in the page cache before the first contender, as for the others
        for run in range(args.runs):
            order = list(contenders.items())
            order = order[run % len(order):] + order[:run % len(order)]  # each run starts with another one
            for name, fn in order:
                times[name].append(timed(fn, name))
                print(f"  run {run + 1}: {name}: {times[name][-1]:.1f} s wall, {CPU[name][-1]:.1f} s CPU",
                      flush=True)

        thumbs: dict[str, list[float]] = {"seek": [], "pass": []}
        probe = asyncio.run(probe_media(src))
        thumb_config = parse_output_config("thumbnail", {"count": 20, "width": 320})
        for _ in range(max(1, args.runs)):
            for strategy in thumbs:
                thumbs[strategy].append(timed(lambda: asyncio.run(make_thumbnails.fn(
                    src, probe, thumb_config, fresh(f"thumbs-{strategy}"), strategy=strategy))))
        chosen = asyncio.run(make_thumbnails.fn(src, probe, thumb_config, fresh("thumbs-auto"))).strategy

    med = {name: statistics.median(values) for name, values in times.items()}
    cpu = {name: statistics.median(values) for name, values in CPU.items()}
    print(f"\n{'median of ' + str(args.runs) + ' run(s)':32s} {'wall':>8s} {'CPU':>8s}")
    for name, value in med.items():
        print(f"{name:32s} {value:7.1f}s {cpu[name]:7.1f}s")
    ours_s, best_s, per_rung_s = med["ours"], med["best single command"], med["per-rung ffmpegs at once"]
    print(f"\nours / best single command = {ours_s / best_s:.2f} wall, {cpu['ours'] / cpu['best single command']:.2f}"
          " CPU   (target <= 1.2)")
    if "naive (per rung per format)" in med:
        naive = "naive (per rung per format)"
        print(f"ours / naive               = {ours_s / med[naive]:.2f} wall, {cpu['ours'] / cpu[naive]:.2f} CPU"
              f"   (naive takes {med[naive] / ours_s:.2f}x ours)")
    winner = "decode once + split" if best_s <= per_rung_s else "one ffmpeg per rung"
    print(f"decode strategy: once + split {best_s:.1f} s wall / {cpu['best single command']:.1f} s CPU vs per rung"
          f" at once {per_rung_s:.1f} s / {cpu['per-rung ffmpegs at once']:.1f} s CPU -> {winner} wins")
    print("\nthumbnails, count=20 of the same file (make_thumbnails):")
    for strategy, values in thumbs.items():
        print(f"  {strategy:6s} {statistics.median(values):6.2f} s")
    print(f"  auto chooses: {chosen}")
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()

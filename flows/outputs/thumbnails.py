"""``thumbnail`` outputs: still frames at given times, an interval or a count, and optionally a
sprite sheet with a WebVTT index for players' seek previews (JW Player style:
``sprite.jpg#xywh=x,y,w,h``, URLs relative to the .vtt).

Each thumbnail is the first frame at or after its time. Two ways to get them, chosen per
input by their decoding cost:

- **seek**: one short ffmpeg per frame that seeks before decoding (two at a time,
  ``flows.steps.video.frames.grab_frames``); it decodes from the key frame before each time,
  about half a GOP per frame, whatever the file's length;
- **pass**: one ffmpeg decoding the whole file once, a ``select`` keeping the wanted frames.

Measured (``bench/vimqu_ladder.py``, count=20 of a 60 s 1080p30 H.264 file with x264's default
250-frame GOP, 2 loaded cores): one pass is the faster there (20 seeks decode ~2,500 frames
plus 20 process starts, the pass 1,800 frames); on a 2-hour film the seeks win by far. So
``auto`` estimates the GOP from the first 30 s of the input's packet index (no decoding) and
takes the seeks only when ``frames × (GOP / 2 + 10)`` is below the file's frame count.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from flows.errors import TaskError
from flows.outputs.config import MAX_THUMBNAILS, ThumbnailConfig
from flows.settings import get_settings
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import FORMAT_WHITELIST, INPUT_PROTOCOLS, ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe
from flows.steps.tools.process import run_tool
from flows.steps.video.scaling import scale_filter
from flows.steps.video.frames import grab_frames, last_frame_time
from flows.steps.video.scaling import output_size

SPRITE_TILE_MAX_WIDTH = 192
SEEK_OVERHEAD_FRAMES = 10
"""A seek's process start and seek, in decoded frames' worth (for the choice of strategy)."""
GOP_SAMPLE_SECONDS = 30
MAX_GRABBED_PIXELS = 250_000_000
"""Pixels of all the frames of one output held at once (frames x width x height)."""
WEBP_MAX_SIDE = 16383
Strategy = Literal["auto", "seek", "pass"]
_PIL = {"jpg": ("JPEG", True), "png": ("PNG", False), "webp": ("WEBP", True)}


@dataclass(frozen=True)
class ThumbnailResult:
    """What ``make_thumbnails`` wrote (paths relative to its output directory)."""

    files: list[str]
    """Thumbnails (``thumb_00001.<ext>``…, in the order of ``times``), then sprite and .vtt."""
    times: list[float]
    """The time of each thumbnail (after clamping to the last frame), seconds."""
    width: int
    height: int
    sprite: str | None = None
    vtt: str | None = None
    tile_size: tuple[int, int] | None = None
    grid: tuple[int, int] | None = None
    """(columns, rows) of the sprite sheet."""
    duration: float = 0.0
    strategy: str = "seek"
    """How the frames were grabbed: ``seek`` (one seek per frame) or ``pass`` (one decode)."""


def video_duration(probe: MediaProbe) -> float:
    """Seconds of video: the stream's duration, else the file's."""
    return (probe.video.duration if probe.video and probe.video.duration else None) or probe.duration


def thumbnail_times(config: ThumbnailConfig, duration: float) -> list[float]:
    """The times asked by ``config`` for a video of ``duration`` seconds: ``times`` as given;
    every ``interval`` s from 0; ``count`` slice centres; or the defaults (see
    ``ThumbnailConfig``). TaskError naming the field when that makes over MAX_THUMBNAILS."""
    if config.times is not None:
        return list(config.times)
    if config.count is not None:
        return [round((i + 0.5) * duration / config.count, 3) for i in range(config.count)]
    interval = config.interval
    if interval is None and config.sprite:
        interval = max(1.0, math.ceil(duration / 100))
    if interval is None:
        return [round(duration / 2, 3)]
    count = max(1, math.ceil(duration / interval - 1e-9))
    if count > MAX_THUMBNAILS:
        raise TaskError(f"interval: {interval:g} s makes {count} thumbnails of a {duration:.1f} s video,"
                        f" over the limit of {MAX_THUMBNAILS}")
    return [round(i * interval, 3) for i in range(count)]


def sprite_cues(times: list[float], duration: float) -> list[tuple[float, float, int]]:
    """(start, end, tile index) of each cue: tile i (frame at times[i], sorted) shows from its
    time (the first from 0) until the next tile's time (the last until ``duration``)."""
    cues = []
    for i, t in enumerate(times):
        start = 0.0 if i == 0 else t
        end = times[i + 1] if i + 1 < len(times) else max(duration, t + 0.001)
        if end > start:
            cues.append((start, end, i))
    return cues


def _timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def sprite_vtt(cues: list[tuple[float, float, int]], sprite_name: str, tile: tuple[int, int], columns: int) -> str:
    """The WebVTT index of a sprite sheet: one cue per tile, ``<sprite>#xywh=x,y,w,h``."""
    w, h = tile
    lines = ["WEBVTT", ""]
    for start, end, i in cues:
        x, y = (i % columns) * w, (i // columns) * h
        lines += [f"{_timestamp(start)} --> {_timestamp(end)}", f"{sprite_name}#xywh={x},{y},{w},{h}", ""]
    return "\n".join(lines)


async def keyframe_interval(src: Path, probe: MediaProbe) -> float:
    """Mean seconds between the video's key frames in its first ``GOP_SAMPLE_SECONDS`` s,
    from the packet index (demuxing only); the sample's length when it holds one key frame."""
    out, _ = await run_tool(
        ["ffprobe", "-v", "error", "-protocol_whitelist", INPUT_PROTOCOLS, "-format_whitelist", FORMAT_WHITELIST,
         "-select_streams", "v:0", "-read_intervals", f"%+{GOP_SAMPLE_SECONDS}",
         "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", str(src)],
        timeout=get_settings().probe_timeout, what="ffprobe")
    keys = sorted(float(t) for t, _, flags in (line.partition(",") for line in out.decode().splitlines())
                  if "K" in flags and t not in ("", "N/A"))
    if len(keys) < 2:
        return float(min(GOP_SAMPLE_SECONDS, video_duration(probe)) or 1.0)
    return (keys[-1] - keys[0]) / (len(keys) - 1)


def choose_strategy(frames: int, duration: float, fps: float, gop_seconds: float) -> str:
    """``seek`` when ``frames`` seeks decode fewer frames than one pass over the file."""
    fps = fps or 25.0
    seek_cost = frames * (min(gop_seconds, duration) * fps / 2 + SEEK_OVERHEAD_FRAMES)
    return "seek" if seek_cost < duration * fps else "pass"


def _select(times: list[float]) -> str:
    """A ``select`` expression keeping the first frame at or after each of ``times``."""
    return "+".join(f"gte(t,{t - 0.0005:.4f})*not(gte(prev_t,{t - 0.0005:.4f}))" for t in times)


async def pass_frames(src: Path, probe: MediaProbe, times: list[float], size: tuple[int, int], *, crop: bool,
                      progress: ProgressCallback | None = None) -> list[Image.Image] | None:
    """The first frame at or after each of ``times`` (sorted, distinct, each more than a frame
    apart) from one decoding pass; None when the pass did not yield one frame per time (a
    variable frame rate put two times on one frame): the caller seeks instead."""
    raw = src.with_name(f"{src.name}.pass.{size[0]}x{size[1]}.rgb24")
    frame_bytes = size[0] * size[1] * 3
    try:
        await run_ffmpeg([*input_args(src, probe.format_name), "-map", "0:v:0", "-an", "-sn", "-dn",
                          "-vf", f"select='{_select(times)}',{scale_filter(size, crop)}", "-fps_mode", "passthrough",
                          "-pix_fmt", "rgb24", "-f", "rawvideo", str(raw)],
                         duration=probe.duration, progress=progress)
        if raw.stat().st_size != frame_bytes * len(times):
            return None
        data = await asyncio.to_thread(raw.read_bytes)
    finally:
        raw.unlink(missing_ok=True)
    return [Image.frombytes("RGB", size, data[i * frame_bytes:(i + 1) * frame_bytes]) for i in range(len(times))]


def _save(image: Image.Image, path: Path, format: str, quality: int) -> None:
    pil_format, lossy = _PIL[format]
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(path, pil_format, **({"quality": quality} if lossy else {}))


def _write(frames: list[Image.Image], names: list[str], out_dir: Path, config: ThumbnailConfig) -> None:
    for frame, name in zip(frames, names):
        _save(frame, out_dir / name, config.format, config.quality)


def _sprite(tiles: list[Image.Image], columns: int, path: Path, config: ThumbnailConfig) -> tuple[int, int]:
    w, h = tiles[0].size
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (min(columns, len(tiles)) * w, rows * h))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    _save(sheet, path, config.format, config.quality)
    return min(columns, len(tiles)), rows


def _run_name(parameters: dict) -> str:
    config = parameters["config"]
    what = ("sprite" if config.sprite_only else "thumbnails + sprite") if config.sprite else "thumbnails"
    return f"{what} {config.width or 'auto'}x{config.height or 'auto'} {config.format}"


@step("thumbnails", run_name=_run_name)
async def make_thumbnails(
    src: Path, probe: MediaProbe, config: ThumbnailConfig, out_dir: Path, *,
    strategy: Strategy = "auto", progress: ProgressCallback | None = None,
) -> ThumbnailResult:
    """Write the thumbnails ``config`` asks for of ``src`` (probed) into ``out_dir``:
    ``thumb_00001.<ext>``… and, with ``sprite``, ``sprite.<ext>`` (tiles at most 192 px wide)
    and ``sprite.vtt``. ``strategy``: how frames are grabbed (see the module; ``auto`` picks the
    cheaper)."""
    if probe.video is None:
        raise TaskError("the input has no video stream: thumbnails need one")
    duration = video_duration(probe)
    size = output_size(probe.video.upright_size, config.width, config.height, config.fit == "fill")
    last = last_frame_time(probe)
    times = [min(max(0.0, t), last) for t in thumbnail_times(config, duration)]
    tile = size
    if config.sprite and size[0] > SPRITE_TILE_MAX_WIDTH:
        tile = (SPRITE_TILE_MAX_WIDTH, max(1, round(size[1] * SPRITE_TILE_MAX_WIDTH / size[0])))
    grab_size = tile if config.sprite_only else size
    unique = sorted(set(times))
    if len(unique) * grab_size[0] * grab_size[1] > MAX_GRABBED_PIXELS:
        raise TaskError(f"{len(unique)} thumbnails of {grab_size[0]}x{grab_size[1]} are too many pixels"
                        f" (over {MAX_GRABBED_PIXELS:,}): ask fewer (times, interval, count) or smaller ones (width)")
    if config.sprite and config.format == "webp":
        columns = min(config.sprite_columns, len(unique))
        if max(columns * tile[0], math.ceil(len(unique) / columns) * tile[1]) > WEBP_MAX_SIDE:
            raise TaskError(f"a webp sprite of {len(unique)} tiles of {tile[0]}x{tile[1]} in {columns} columns"
                            f" would exceed webp's {WEBP_MAX_SIDE} px: change sprite_columns or the format")
    crop = config.fit == "fill"
    fps = probe.video.frame_rate
    # one frame per frame slot: times closer than a frame apart are the same frame
    distinct = len({math.ceil(t * fps - 1e-6) for t in unique}) == len(unique) if fps else False
    if strategy == "auto":
        strategy = "seek"
        if distinct and len(unique) > 1:
            strategy = choose_strategy(len(unique), duration, fps, await keyframe_interval(src, probe))
    frames = None
    if strategy == "pass" and distinct:
        frames = await pass_frames(src, probe, unique, grab_size, crop=crop, progress=progress)
    if frames is None:
        strategy = "seek"
        frames = await grab_frames(src, probe, unique, grab_size, crop=crop, progress=progress)
    by_time = dict(zip(unique, frames))
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    ext = config.format
    if not config.sprite_only:
        names = [f"thumb_{i + 1:05d}.{ext}" for i in range(len(times))]
        await asyncio.to_thread(_write, [by_time[t] for t in times], names, out_dir, config)
        files += names
    sprite = vtt = None
    grid = None
    if config.sprite:
        tiles = [f if f.size == tile else f.resize(tile, Image.Resampling.LANCZOS) for f in frames]
        columns = min(config.sprite_columns, len(tiles))
        sprite, vtt = f"sprite.{ext}", "sprite.vtt"
        grid = await asyncio.to_thread(_sprite, tiles, columns, out_dir / sprite, config)
        cues = sprite_cues(unique, duration)
        (out_dir / vtt).write_text(sprite_vtt(cues, sprite, tile, columns))
        files += [sprite, vtt]
    step_log("%d frames of %s at %dx%d (%s)%s", len(unique), src.name, *grab_size, strategy,
             f", sprite {grid[0]}x{grid[1]} tiles of {tile[0]}x{tile[1]}" if grid else "")
    return ThumbnailResult(files=files, times=times, width=size[0], height=size[1], sprite=sprite, vtt=vtt,
                           tile_size=tile if config.sprite else None, grid=grid, duration=round(duration, 3),
                           strategy=strategy)

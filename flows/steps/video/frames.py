"""Still frames from a video: one frame at a time (``video.thumb``) or frames at equal
intervals tiled into a film strip (``video.strip``). Every frame is grabbed by seeking the
input before decoding, so a frame near the end of a long file costs what one near the start
costs."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

from PIL import Image

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.image import imaging
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe
from flows.steps.video.scaling import scale_filter

# Seconds before a time past the last frame from which the last frame is searched.
_TAIL = 2.0


def last_frame_time(probe: MediaProbe) -> float:
    """The time of the video's last frame (its duration less one frame)."""
    video = _video(probe)
    duration = video.duration or probe.duration
    return max(0.0, duration - 1 / video.frame_rate) if video.frame_rate else max(0.0, duration)


async def grab_frame(
    path: Path, probe: MediaProbe, time: float, size: tuple[int, int], *, crop: bool, alpha: bool = False
) -> Image.Image:
    """The first upright frame from ``time`` s on (the last one when past the end), scaled to
    ``size`` (fit, or filled and centre-cropped with ``crop``); RGBA when ``alpha``."""
    mode, pix_fmt = ("RGBA", "rgba") if alpha else ("RGB", "rgb24")
    time = min(max(0.0, time), last_frame_time(probe))
    target = path.with_name(f"{path.name}.{time:.3f}.{size[0]}x{size[1]}.{pix_fmt}")
    output = ["-an", "-sn", "-dn", "-vf", scale_filter(size, crop), "-pix_fmt", pix_fmt,
              "-f", "rawvideo", str(target)]
    timeout = get_settings().probe_timeout
    try:
        await run_ffmpeg([*input_args(path, probe.format_name, seek=time), "-frames:v", "1", *output],
                         timeout=timeout)
        frame = await asyncio.to_thread(_last_frame, target, mode, size)
        if frame is None:  # past the last frame: decode the tail and keep its last frame
            await run_ffmpeg([*input_args(path, probe.format_name, seek=max(0.0, time - _TAIL)), *output],
                             timeout=timeout)
            frame = await asyncio.to_thread(_last_frame, target, mode, size)
    finally:
        target.unlink(missing_ok=True)
    if frame is None:
        raise TaskError(f"no video frame could be decoded at {time:g} s")
    return frame


def _last_frame(raw: Path, mode: str, size: tuple[int, int]) -> Image.Image | None:
    """The last whole frame of a raw video file (None when it holds none); only that frame
    is read."""
    frame_bytes = size[0] * size[1] * len(mode)
    count = raw.stat().st_size // frame_bytes
    if not count:
        return None
    with raw.open("rb") as file:
        file.seek((count - 1) * frame_bytes)
        return Image.frombytes(mode, size, file.read(frame_bytes))


def strip_times(probe: MediaProbe, start: float, end: float | None, count: int) -> list[float]:
    """Up to ``count`` times at equal intervals from ``start`` to ``end`` (default: the last
    frame), both included; fewer when the span holds fewer frames."""
    if end is not None and end < start:
        raise TaskError(f"end ({end:g} s) is before start ({start:g} s)")
    last = last_frame_time(probe)
    end = last if end is None else min(end, last)
    start = min(max(0.0, start), end)
    frame_rate = _video(probe).frame_rate or 1.0
    count = max(1, min(count, math.floor((end - start) * frame_rate + 1e-6) + 1))
    if count == 1:
        return [start]
    step = (end - start) / (count - 1)
    return [start + i * step for i in range(count)]


async def grab_frames(
    path: Path,
    probe: MediaProbe,
    times: list[float],
    size: tuple[int, int],
    *,
    crop: bool,
    progress: ProgressCallback | None = None,
) -> list[Image.Image]:
    """``grab_frame`` at each of ``times``, a few at once; ``progress`` gets the percent done."""
    limit = asyncio.Semaphore(os.cpu_count() or 2)
    done = 0

    async def one(time: float) -> Image.Image:
        nonlocal done
        async with limit:
            frame = await grab_frame(path, probe, time, size, crop=crop)
        done += 1
        if progress:
            await progress(100 * done / len(times))
        return frame

    return list(await asyncio.gather(*(one(t) for t in times)))


@step("thumbnail", run_name=lambda parameters: "thumbnail {}x{} at {:g} s".format(*parameters["size"],
                                                                                   parameters["time"]))
async def thumbnail_frame(
    path: Path, probe: MediaProbe, time: float, size: tuple[int, int], dest_dir: Path, *, crop: bool,
    alpha: bool = False, format: str = "jpeg", quality: int | None = None, poster: bool = False,
) -> Path:
    """``grab_frame`` written by ``save_frame`` to ``dest_dir``: ``video.thumb``'s image."""
    frame = await grab_frame(path, probe, time, size, crop=crop, alpha=alpha)
    dest = await asyncio.to_thread(save_frame, frame, dest_dir, format, quality=quality, poster=poster)
    step_log("frame at %.3f s of %s as %s, %dx%d (%d bytes)", min(time, last_frame_time(probe)), path.name,
             dest.name, *size, dest.stat().st_size)
    return dest


@step("strip", run_name=lambda parameters: "strip of {} frames {}x{}".format(len(parameters["times"]),
                                                                             *parameters["size"]))
async def film_strip(
    path: Path, probe: MediaProbe, times: list[float], size: tuple[int, int], dest_dir: Path, *, crop: bool,
    wrap: int | None, format: str = "jpeg", progress: ProgressCallback | None = None,
) -> tuple[Path, tuple[int, int]]:
    """The frames at ``times`` tiled ``wrap`` to a row and saved in ``dest_dir``: ``video.strip``'s
    image; returns it with its size."""
    frames = await grab_frames(path, probe, times, size, crop=crop, progress=progress)
    image = await asyncio.to_thread(tile, frames, wrap)
    dest = await asyncio.to_thread(save_frame, image, dest_dir, format)
    step_log("%d frames from %.3f s to %.3f s of %s as %s, %dx%d (%d bytes)", len(frames), times[0], times[-1],
             path.name, dest.name, *image.size, dest.stat().st_size)
    return dest, image.size


def grid(count: int, wrap: int | None) -> tuple[int, int]:
    """(columns, rows) of a strip of ``count`` frames, ``wrap`` to a row (None: one row)."""
    columns = min(wrap or count, count)
    return columns, math.ceil(count / columns)


def tile(frames: list[Image.Image], wrap: int | None) -> Image.Image:
    """The frames side by side, ``wrap`` to a row (all on one row when None)."""
    columns, rows = grid(len(frames), wrap)
    w, h = frames[0].size
    strip = Image.new(frames[0].mode, (columns * w, rows * h))
    for i, frame in enumerate(frames):
        strip.paste(frame, ((i % columns) * w, (i // columns) * h))
    return strip


def save_frame(image: Image.Image, dest_dir: Path, format: str, *, quality: int | None = None,
               poster: bool = False) -> Path:
    """Write ``image`` as ``dest_dir/output.<ext>`` (``image.thumb``'s writer; JPEG at
    ``quality`` when given); with ``poster`` ``image.thumb``'s play icon is drawn first."""
    if poster:
        imaging.draw_play_icon(image)  # the image.thumb play icon
    options = {"quality": quality} if quality and format == "jpeg" else {}
    return imaging.save_image(image, dest_dir, format, **options)


def _video(probe: MediaProbe):
    if probe.video is None:
        raise TaskError("the input has no video stream")
    return probe.video

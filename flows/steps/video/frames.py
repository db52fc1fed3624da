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
from flows.steps.image import imaging
from flows.steps.tools.media import MediaProbe, ProgressCallback, input_args, run_ffmpeg
from flows.steps.video.scaling import scale_filter

FRAME_TIMEOUT = 120.0
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
    frame_bytes = size[0] * size[1] * len(mode)
    time = min(max(0.0, time), last_frame_time(probe))
    target = path.with_name(f"{path.name}.{time:.3f}.{size[0]}x{size[1]}.{pix_fmt}")
    output = ["-an", "-sn", "-dn", "-vf", scale_filter(size, crop), "-pix_fmt", pix_fmt,
              "-f", "rawvideo", str(target)]
    try:
        await run_ffmpeg([*input_args(path, probe.format_name, seek=time), "-frames:v", "1", *output],
                         timeout=FRAME_TIMEOUT)
        data = target.read_bytes()
        if len(data) < frame_bytes:  # past the last frame: decode the tail and keep its last frame
            await run_ffmpeg([*input_args(path, probe.format_name, seek=max(0.0, time - _TAIL)), *output],
                             timeout=FRAME_TIMEOUT)
            data = target.read_bytes()
    finally:
        target.unlink(missing_ok=True)
    if len(data) < frame_bytes:
        raise TaskError(f"no video frame could be decoded at {time:g} s")
    last = len(data) // frame_bytes - 1
    return Image.frombytes(mode, size, data[last * frame_bytes:(last + 1) * frame_bytes])


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

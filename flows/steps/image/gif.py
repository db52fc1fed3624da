"""Animate images into a GIF (the ``image.gif`` task)."""

from __future__ import annotations

import asyncio
from itertools import islice
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageSequence

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.image.imaging import frame_size, resize_upright, save_image
from flows.steps.image.probe import DECODE_ERRORS, about_source, open_image
from flows.steps.step import step, step_log

# Frames one GIF may hold, all inputs together (an animated input contributes each of its frames).
MAX_FRAMES = 500


def make_gif(
    sources: Sequence[tuple[str, Path]],
    dest_dir: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    loop: int = 0,
    frame_duration: float = 0.1,
    max_pixels: int | None = None,
) -> tuple[Path, dict]:
    """Write ``dest_dir/output.gif`` from the ``(url, path)`` sources, in order; returns it
    with its ``width`` and ``height``.

    The size is ``width``×``height``; with one of them the other follows the first image's
    aspect ratio, with neither it is the first image's (upright) size. Every frame is turned
    upright, scaled to cover that size and centre-cropped. An animated source contributes
    its frames, at most ``MAX_FRAMES`` in all, and all frames together stay under the pixel
    cap (frames × width × height): both are checked as frames are read, so an input with
    endless frames is refused early. Each frame shows ``frame_duration`` seconds (rounded to
    1/100 s, as GIF stores it); ``loop`` is 0 to loop forever, -1 to play once, n for the GIF
    loop count n. Consecutive identical frames are merged into one longer frame.
    """
    if not sources:
        raise TaskError("no image to animate")
    centiseconds = round(frame_duration * 100)
    if centiseconds < 1:
        raise TaskError(f"frame_duration must be at least 0.01 s, not {frame_duration}")
    if loop < -1:
        raise TaskError(f"loop must be -1, 0 or a positive count, not {loop}")
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    size = frame_size(sources, width, height, limit)
    budget = min(MAX_FRAMES, limit // (size[0] * size[1]))
    if budget < 1:
        raise TaskError(f"one {size[0]}×{size[1]} frame is over the pixel limit of {limit}")

    frames: list[Image.Image] = []
    for url, path in sources:
        with about_source(url), open_image(path, max_pixels=limit) as img:
            try:
                for frame in islice(ImageSequence.Iterator(img), budget - len(frames) + 1):
                    if len(frames) == budget:
                        raise TaskError(
                            f"the GIF would have more than {budget} frames of {size[0]}×{size[1]}"
                            f" (at most {MAX_FRAMES} frames and {limit} pixels in all)"
                        )
                    resized, _ = resize_upright(frame, *size, crop=True, max_pixels=limit)
                    resized.info.clear()
                    frames.append(resized)
            except DECODE_ERRORS as exc:
                raise TaskError(f"not a readable image: {exc}") from exc

    options = {"save_all": True, "append_images": frames[1:], "duration": centiseconds * 10}
    if loop >= 0:
        options["loop"] = loop
    if any(frame.mode == "RGBA" for frame in frames):
        options["disposal"] = 2  # clear each frame before the next: transparent areas stay clear
    dest = save_image(frames[0], dest_dir, "gif", **options)
    return dest, {"width": size[0], "height": size[1]}


@step("gif", run_name=lambda parameters: f"gif of {len(parameters['sources'])} images")
async def animate(sources: Sequence[tuple[str, Path]], dest_dir: Path, **options) -> tuple[Path, dict]:
    """``make_gif`` as a step, off the event loop."""
    dest, values = await asyncio.to_thread(make_gif, sources, dest_dir, **options)
    step_log("%s: %dx%d from %d images (%d bytes)", dest.name, values["width"], values["height"], len(sources),
             dest.stat().st_size)
    return dest, values

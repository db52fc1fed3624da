"""Tile images into a film strip, one row or a grid (the ``image.strip`` task)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Sequence

from PIL import Image

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.image.imaging import check_format, content_type, frame_size, render, save_image
from flows.steps.image.probe import about_source
from flows.steps.step import step, step_log


def make_strip(
    sources: Sequence[tuple[str, Path]],
    dest_dir: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    crop: bool = False,
    wrap: int | None = None,
    format: str = "jpeg",
    max_pixels: int | None = None,
) -> tuple[Path, dict]:
    """Write ``dest_dir/output.<ext>``: the ``(url, path)`` sources side by side, ``wrap`` to
    a row (one row when None); returns it with the ``image.strip`` values.

    Every cell is ``width``×``height``; with one of them the other follows the first image's
    aspect ratio, with neither the cell is the first image's size. Each image (turned upright
    from its EXIF orientation) fits inside its cell, centred on black, or fills it,
    centre-cropped (``crop``). The output size is checked against the pixel cap before
    anything is decoded; errors name the source's URL.
    """
    check_format(format)
    if not sources:
        raise TaskError("no image to put in the strip")
    if wrap is not None and wrap < 1:
        raise TaskError(f"wrap must be at least 1, not {wrap}")
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    cell = frame_size(sources, width, height, limit)
    columns = min(wrap or len(sources), len(sources))
    rows = math.ceil(len(sources) / columns)
    size = (columns * cell[0], rows * cell[1])
    if size[0] * size[1] > limit:
        raise TaskError(f"the strip would be {size[0]}×{size[1]} = {size[0] * size[1]} pixels, over the limit of {limit}")

    strip = Image.new("RGB", size, "black")
    for i, (url, path) in enumerate(sources):
        with about_source(url):
            frame, _ = render(path, width=cell[0], height=cell[1], crop=crop, max_pixels=limit)
        position = ((i % columns) * cell[0] + (cell[0] - frame.width) // 2,
                    (i // columns) * cell[1] + (cell[1] - frame.height) // 2)
        strip.paste(frame, position, frame if frame.mode == "RGBA" else None)
    dest = save_image(strip, dest_dir, format)
    values = {"count": len(sources), "width": size[0], "height": size[1], "content_type": content_type(format)}
    return dest, values


@step("strip", run_name=lambda parameters: f"strip of {len(parameters['sources'])} images")
async def tile_images(sources: Sequence[tuple[str, Path]], dest_dir: Path, **options) -> tuple[Path, dict]:
    """``make_strip`` as a step, off the event loop."""
    dest, values = await asyncio.to_thread(make_strip, sources, dest_dir, **options)
    step_log("%s: %d images, %dx%d (%d bytes)", dest.name, values["count"], values["width"], values["height"],
             dest.stat().st_size)
    return dest, values

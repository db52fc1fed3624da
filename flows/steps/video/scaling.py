"""Output sizes of video frames (fit in a box, or fill it and centre-crop) and the ffmpeg
filter that produces them."""

from __future__ import annotations

from flows.errors import TaskError
from flows.steps.image import imaging


def output_size(
    source: tuple[int, int], width: int | None, height: int | None, crop: bool, *, even: bool = False
) -> tuple[int, int]:
    """The size a frame of upright size ``source`` is scaled to, as ``image.thumb`` sizes it.

    Both ``width`` and ``height``: fit inside the box (aspect kept) or, with ``crop``, fill it
    exactly; one of them: scaled to it, aspect kept; neither: the source size. ``even`` rounds
    each side down to an even number (what H.264 in 4:2:0 needs).
    """
    if source[0] < 1 or source[1] < 1:
        raise TaskError("the video stream has no frame size")
    size = imaging.target_size(source, width, height, crop)
    if even:
        size = (max(2, size[0] - size[0] % 2), max(2, size[1] - size[1] % 2))
    return size


def scale_filter(size: tuple[int, int], crop: bool) -> str:
    """ffmpeg filters scaling an (upright) frame to ``size``; with ``crop`` it is scaled to
    cover ``size`` and centre-cropped to it."""
    w, h = size
    if crop:
        return f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
    return f"scale={w}:{h},setsar=1"

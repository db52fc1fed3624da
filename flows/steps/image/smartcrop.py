"""The most interesting non-overlapping boxes of an image for a given aspect ratio
(``image.smartcrop``): windows slid over the image are ranked by the entropy of their grey
levels, plus the faces they hold whole; a focal point, when given, ranks them instead."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from flows.steps.image.faces import Face
from flows.steps.step import step, step_log

# Entropy is measured on the image with its longest side at this many pixels...
ENTROPY_SIDE = 400
# ... over this many grey levels (so a window's entropy is 0 to log2(LEVELS) bits).
LEVELS = 32
# Score a window gains for each face it holds whole (a part of a face counts in proportion);
# entropy scores 0-1, so a face outweighs any difference in texture.
FACE_WEIGHT = 1.0
# At most this many windows are scored (the step grows when step_ratio asks for more).
MAX_WINDOWS = 250_000


@dataclass(frozen=True)
class Box:
    """A chosen box in pixels of the analysed image, with its score."""

    x: float
    y: float
    width: float
    height: float
    score: float


def window_size(size: tuple[int, int], aspect_ratio: float, diag_ratio: float) -> tuple[float, float]:
    """The box of ``aspect_ratio`` (width/height) whose diagonal is ``diag_ratio`` of the
    image's, shrunk to fit inside the image when it would not."""
    W, H = size
    diagonal = diag_ratio * math.hypot(W, H)
    w, h = diagonal * aspect_ratio / math.hypot(aspect_ratio, 1), diagonal / math.hypot(aspect_ratio, 1)
    shrink = min(1.0, W / w, H / h)
    return w * shrink, h * shrink


def smart_boxes(
    image: Image.Image,
    *,
    aspect_ratio: float,
    boxes_number: int,
    step_ratio: float,
    diag_ratio: float,
    reverse: bool = False,
    faces: list[Face] = (),
    focal_point: tuple[float, float] | None = None,
) -> list[Box]:
    """Up to ``boxes_number`` non-overlapping boxes of ``image``, best first (worst first
    with ``reverse``); ``faces`` are in ``image``'s pixels, ``focal_point`` in fractions.

    Windows of ``window_size`` start every ``step_ratio`` of the width (horizontally) and of
    the height (vertically), the last one flush with the far edge. Each scores the entropy of
    its grey levels (0-1) plus ``FACE_WEIGHT`` per face it holds (scaled by how much of the
    face it holds and the detection's confidence). With a ``focal_point`` the score is instead
    how close the window's centre is to it (1 at the point, 0 a diagonal away). The boxes are
    taken greedily in score order, skipping any that overlaps one already taken.
    """
    scale = min(1.0, ENTROPY_SIDE / max(image.size))
    small = image.convert("L")
    if scale < 1:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BOX)
    W, H = small.size
    w, h = window_size((W, H), aspect_ratio, diag_ratio)
    ww, wh = max(1, math.floor(w)), max(1, math.floor(h))
    xs = _starts(W - ww, step_ratio * W)
    ys = _starts(H - wh, step_ratio * H)
    while len(xs) * len(ys) > MAX_WINDOWS:
        step_ratio *= 2
        xs, ys = _starts(W - ww, step_ratio * W), _starts(H - wh, step_ratio * H)
    left, top = np.meshgrid(xs, ys)
    left, top = left.ravel(), top.ravel()

    if focal_point is not None:
        fx, fy = focal_point[0] * W, focal_point[1] * H
        distance = np.hypot(left + ww / 2 - fx, top + wh / 2 - fy)
        scores = 1 - distance / math.hypot(W, H)
    else:
        scores = _entropies(np.asarray(small), left, top, ww, wh)
        for face in faces:
            fx0, fy0 = face.x * scale, face.y * scale
            fx1, fy1 = fx0 + face.width * scale, fy0 + face.height * scale
            overlap_w = np.clip(np.minimum(left + ww, fx1) - np.maximum(left, fx0), 0, None)
            overlap_h = np.clip(np.minimum(top + wh, fy1) - np.maximum(top, fy0), 0, None)
            held = overlap_w * overlap_h / max(face.area * scale * scale, 1e-9)
            scores = scores + FACE_WEIGHT * face.confidence * held

    order = np.argsort(scores if reverse else -scores, kind="stable")
    chosen: list[tuple[int, int]] = []
    boxes: list[Box] = []
    for i in order:
        x, y = int(left[i]), int(top[i])
        if any(abs(x - cx) < ww and abs(y - cy) < wh for cx, cy in chosen):
            continue
        chosen.append((x, y))
        boxes.append(Box(x / scale, y / scale, ww / scale, wh / scale, round(float(scores[i]), 4)))
        if len(boxes) == boxes_number:
            break
    return boxes


def _starts(room: int, step: float) -> np.ndarray:
    """Window offsets 0, step, 2·step… within ``room``, plus ``room`` itself (the far edge)."""
    step = max(1.0, step)
    starts = np.arange(0, room + 1e-9, step).astype(np.int64)
    return np.unique(np.append(starts, room))


def _entropies(grey: np.ndarray, left: np.ndarray, top: np.ndarray, ww: int, wh: int) -> np.ndarray:
    """Entropy (bits / log2(LEVELS), so 0-1) of the grey levels in each window, from integral
    histograms: one summed-area table per level, four look-ups per window and level."""
    levels = (grey.astype(np.int32) * LEVELS) >> 8
    counts = np.empty((len(left), LEVELS), dtype=np.float64)
    for level in range(LEVELS):
        table = np.zeros((grey.shape[0] + 1, grey.shape[1] + 1), dtype=np.int32)
        table[1:, 1:] = np.cumsum(np.cumsum(levels == level, axis=0, dtype=np.int32), axis=1)
        counts[:, level] = (
            table[top + wh, left + ww] - table[top, left + ww] - table[top + wh, left] + table[top, left]
        )
    p = counts / (ww * wh)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return bits / math.log2(LEVELS)


@step("smartcrop", run_name=lambda parameters: f"smartcrop {parameters['options']['aspect_ratio']:.3g}:1")
async def find_crop_boxes(image: Image.Image, **options) -> list[Box]:
    """``smart_boxes`` as a step, off the event loop."""
    boxes = await asyncio.to_thread(smart_boxes, image, **options)
    step_log("%d box(es) in %dx%d, best score %s", len(boxes), *image.size,
             f"{boxes[0].score:.3f}" if boxes else "-")
    return boxes

"""Salient points of an image by the spectral residual method (Hou & Zhang, "Saliency
Detection: A Spectral Residual Approach", CVPR 2007), as OpenCV's contrib
``StaticSaliencySpectralResidual`` computes it, keeping the image's aspect ratio."""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image

from flows.steps.step import step, step_log

# The saliency map is computed with the image's longest side at this many pixels (the paper's 64).
MAP_SIDE = 64
# Peaks closer than this fraction of the map's diagonal to a stronger one are not reported.
SUPPRESSION = 0.12
# Peaks weaker than this fraction of the strongest are not reported.
MIN_WEIGHT = 0.1


def saliency_map(image: Image.Image) -> np.ndarray:
    """The spectral-residual saliency of ``image`` (longest side ``MAP_SIDE``), scaled to 0-1."""
    import cv2  # imported on first use: the API process imports this module but never runs it

    scale = MAP_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    grey = np.asarray(image.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float32) / 255
    # Mirrored margins keep the FFT's wrap-around from lighting up the image's edges.
    pad = max(1, MAP_SIDE // 8)
    grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9).astype(np.float32)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), sigmaX=MAP_SIDE / 24)
    saliency = saliency[pad:-pad, pad:-pad]
    top = float(saliency.max())
    return saliency / top if top > 0 else saliency


def salient_points(image: Image.Image, count: int) -> list[tuple[float, float, float]]:
    """Up to ``count`` salient points of ``image`` as ``(x, y, weight)`` in its pixels, the
    strongest first; weight is the saliency relative to the strongest point (1.0)."""
    saliency = saliency_map(image)
    h, w = saliency.shape
    radius = SUPPRESSION * float(np.hypot(w, h))
    ys, xs = np.mgrid[0:h, 0:w]
    remaining = saliency.copy()
    points = []
    while len(points) < count:
        y, x = np.unravel_index(int(np.argmax(remaining)), remaining.shape)
        weight = float(remaining[y, x])
        if weight < MIN_WEIGHT:
            break
        points.append(((x + 0.5) * image.width / w, (y + 0.5) * image.height / h, round(weight, 4)))
        remaining[(xs - x) ** 2 + (ys - y) ** 2 <= radius**2] = 0
    return points


@step("saliency", run_name="saliency {count} points")
async def find_salient_points(image: Image.Image, count: int) -> list[tuple[float, float, float]]:
    """``salient_points`` as a step, off the event loop."""
    points = await asyncio.to_thread(salient_points, image, count)
    step_log("%d salient point(s) in %dx%d", len(points), *image.size)
    return points

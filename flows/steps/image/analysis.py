"""An upright, reduced copy of an image to analyse (faces, saliency, smart crops), and the
conversion of what is found there back to the source's pixels and to fractions of its size."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from flows.steps.image.imaging import render
from flows.steps.step import step, step_log

# Longest side, in pixels, images are analysed at (a JPEG is decoded at reduced size).
ANALYSIS_SIDE = 1024


@dataclass(frozen=True)
class AnalysisImage:
    """``image``: the source upright as ``RGB``, longest side at most ``ANALYSIS_SIDE``;
    ``original``: the source's upright size, the frame of reference of every result."""

    image: Image.Image
    original: tuple[int, int]

    def region(self, x: float, y: float, width: float, height: float) -> dict:
        """A box in ``image`` pixels as output values: in source pixels (clipped to the image)
        and as fractions of the source size (``relative_*``)."""
        sx, sy = self._scale
        W, H = self.original
        left, top = _clip(x * sx, W), _clip(y * sy, H)
        right, bottom = _clip((x + width) * sx, W), _clip((y + height) * sy, H)
        return {
            "x": left,
            "y": top,
            "width": right - left,
            "height": bottom - top,
            "relative_x": round(left / W, 4),
            "relative_y": round(top / H, 4),
            "relative_width": round((right - left) / W, 4),
            "relative_height": round((bottom - top) / H, 4),
        }

    def point(self, x: float, y: float) -> dict:
        """A point in ``image`` pixels as output values, in source pixels and as fractions."""
        sx, sy = self._scale
        W, H = self.original
        px, py = min(_clip(x * sx, W), W - 1), min(_clip(y * sy, H), H - 1)
        return {"x": px, "y": py, "relative_x": round(px / W, 4), "relative_y": round(py / H, 4)}

    @property
    def _scale(self) -> tuple[float, float]:
        return self.original[0] / self.image.width, self.original[1] / self.image.height


def load_for_analysis(src: Path, *, side: int = ANALYSIS_SIDE, max_pixels: int | None = None) -> AnalysisImage:
    """Decode ``src`` upright, fitted inside ``side``×``side`` (never enlarged), as ``RGB``
    (transparency flattened onto white)."""
    image, original = render(src, width=side, height=side, upscale=False, max_pixels=max_pixels)
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(background, image)
    return AnalysisImage(image.convert("RGB"), original)


@step("decode", run_name="decode {src.name}")
async def decode(src: Path) -> AnalysisImage:
    """``load_for_analysis`` as a step, off the event loop."""
    analysed = await asyncio.to_thread(load_for_analysis, src)
    step_log("%s: %dx%d, analysed at %dx%d", src.name, *analysed.original, *analysed.image.size)
    return analysed


def _clip(value: float, limit: int) -> int:
    return max(0, min(limit, round(value)))

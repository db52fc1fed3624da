"""A node turned in 3D about an axis through its centre and seen through the camera (spec
§11.2 ``rot`` keys about the x or y axis): drawn with ffmpeg's ``perspective`` filter, whose
four corners are the turned plane's corners projected per frame.

Space is SXML's (x right, y up, z towards the viewer); an angle turns counter-clockwise about
its axis as seen from the axis' tip (right-hand rule), so ``rot="30,0,0,1"`` turns the node
counter-clockwise on screen. The camera sits ``camera`` pixels in front of the screen plane; a
point coming closer than ``camera / max_zoom`` is held there, so a plane turned edge-on is
drawn stretched rather than behind the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flows.create.graph import num

SAMPLES = 90
"""Angles tried between the smallest and the largest key to size the canvas."""


@dataclass(frozen=True)
class Turn:
    """Turning about the unit ``axis`` seen from ``camera`` pixels, depth held at ``max_zoom``."""

    axis: tuple[float, float, float]
    camera: float
    max_zoom: float

    @classmethod
    def about(cls, axis: tuple[float, float, float], camera: float, max_zoom: float) -> "Turn | None":
        """The turn about ``axis`` (any length), or None for a zero axis."""
        length = math.sqrt(sum(v * v for v in axis))
        return cls(tuple(v / length for v in axis), camera, max_zoom) if length > 1e-9 else None

    def _turned(self, x, y, c, s):
        """Rodrigues' rotation of the plane point (x, y, 0): returns (x, y, z) given the
        cosine ``c`` and sine ``s`` (numbers, or ffmpeg expressions as strings)."""
        ux, uy, uz = self.axis
        dot = ux * x + uy * y
        if isinstance(c, str):
            return (f"({c}*{num(x)}-{s}*{num(uz * y)}+(1-{c})*{num(dot * ux)})",
                    f"({c}*{num(y)}+{s}*{num(uz * x)}+(1-{c})*{num(dot * uy)})",
                    f"({s}*{num(ux * y - uy * x)}+(1-{c})*{num(dot * uz)})")
        return (c * x - s * uz * y + (1 - c) * dot * ux,
                c * y + s * uz * x + (1 - c) * dot * uy,
                s * (ux * y - uy * x) + (1 - c) * dot * uz)

    def project(self, x: float, y: float, angle: float) -> tuple[float, float]:
        """Where the plane point (x, y) (SXML axes, pixels from the centre) is seen once
        turned by ``angle`` radians."""
        tx, ty, tz = self._turned(x, y, math.cos(angle), math.sin(angle))
        k = self.camera / max(self.camera - tz, self.camera / self.max_zoom)
        return tx * k, ty * k

    def extent(self, w: float, h: float, angles: list[float]) -> tuple[float, float]:
        """The half width and half height a ``w`` × ``h`` plane covers on screen while its
        angle goes through the range of ``angles``."""
        low, high = min(angles), max(angles)
        tried = [low + (high - low) * i / SAMPLES for i in range(SAMPLES + 1)]
        seen = [self.project(x, y, a) for a in tried for x in (-w / 2, w / 2) for y in (-h / 2, h / 2)]
        return max(abs(p[0]) for p in seen), max(abs(p[1]) for p in seen)

    def corners(self, cw: int, ch: int, angle: str) -> str:
        """``perspective`` options (``sense=destination``) putting the corners of a ``cw`` × ``ch``
        canvas, centred on the node, where they are seen at the angle expression ``angle``."""
        c, s = f"cos({angle})", f"sin({angle})"
        options = []
        for index, (x, y) in enumerate(((-cw / 2, ch / 2), (cw / 2, ch / 2), (-cw / 2, -ch / 2), (cw / 2, -ch / 2))):
            tx, ty, tz = self._turned(x, y, c, s)
            k = f"({num(self.camera)}/max({num(self.camera)}-{tz},{num(self.camera / self.max_zoom)}))"
            options.append(f"x{index}='{num(cw / 2)}+{tx}*{k}':y{index}='{num(ch / 2)}-{ty}*{k}'")
        return f"perspective={':'.join(options)}:interpolation=linear:sense=destination:eval=frame"

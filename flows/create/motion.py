"""The Ken Burns move of a picture (spec §6 ``kenburns``; the exotic single-picture effects are
approximated by it): a zoom 1.0 -> ``KENBURNS_ZOOM`` (``direction="negative"``: the reverse)
with a drift across the picture, computed in floating point per frame and sampled with
bilinear interpolation by ffmpeg's ``perspective`` filter — sub-pixel, so no integer jitter
as with ``zoompan``."""

from __future__ import annotations

from flows.create.graph import num
from flows.create.timeline import VisualClip

KENBURNS_ZOOM = 1.2
"""Zoom at the far end of a Ken Burns move (1.0 at the other)."""
KENBURNS_DRIFTS = (
    ((0.42, 0.45), (0.58, 0.55)),
    ((0.58, 0.42), (0.42, 0.58)),
    ((0.45, 0.58), (0.55, 0.42)),
    ((0.55, 0.55), (0.45, 0.45)),
)
"""Centre of the view (fractions of the picture) at the start and the end of a move; a clip
takes the drift of its slot/position in turn, so successive photos move differently."""
MOVING_EFFECTS = frozenset(("kenburns", "panel", "flower", "explode", "slice", "rectangles", "diving"))
"""Effects drawn as a Ken Burns move."""


def kenburns(clip: VisualClip, first: int, total: int, start: int, size: tuple[int, int]) -> list[str]:
    """The filters moving ``clip``'s picture (``size`` pixels): the move lasts ``total`` frames
    from absolute frame ``first``; the stream being filtered starts at frame ``start``."""
    effect = clip.effect
    span = max(1, total - 1)
    negative = str(effect.params.get("direction", "") or "").strip() in ("negative", "right", "down")
    (cx0, cy0), (cx1, cy1) = KENBURNS_DRIFTS[(clip.slot + sum(clip.path)) % len(KENBURNS_DRIFTS)]
    z0, z1 = 1.0, KENBURNS_ZOOM
    if negative:
        z0, z1, cx0, cy0, cx1, cy1 = z1, z0, cx1, cy1, cx0, cy0
    w, h = size
    p = f"clip((in-1+{start - first})/{span},0,1)"  # perspective's `in` counts from 1
    z = f"({num(z0)}+{num(z1 - z0)}*{p})"
    hw, hh = f"({w}/(2*{z}))", f"({h}/(2*{z}))"
    xc = f"clip({w}*({num(cx0)}+{num(cx1 - cx0)}*{p}),{hw},{w}-{hw})"
    yc = f"clip({h}*({num(cy0)}+{num(cy1 - cy0)}*{p}),{hh},{h}-{hh})"
    x0, x1 = f"({xc}-{hw})", f"({xc}+{hw})"
    y0, y1 = f"({yc}-{hh})", f"({yc}+{hh})"
    return [f"perspective=x0='{x0}':y0='{y0}':x1='{x1}':y1='{y0}':x2='{x0}':y2='{y1}':x3='{x1}':y3='{y1}'"
            f":interpolation=linear:sense=source:eval=frame"]


def moves(clip: VisualClip) -> bool:
    """Whether ``clip``'s picture gets a Ken Burns move (a ``diving`` with several pictures zooms
    between them instead)."""
    effect = clip.effect
    return effect is not None and effect.type in MOVING_EFFECTS and not (effect.type == "diving" and clip.slots > 1)

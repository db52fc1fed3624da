"""The Ken Burns move of a picture (spec §6 ``kenburns``; the exotic single-picture effects are
approximated by it): a zoom 1.0 -> ``KENBURNS_ZOOM`` (``direction="negative"``: the reverse)
with a drift across the picture, computed in floating point per frame and sampled with
bilinear interpolation by ffmpeg's ``perspective`` filter — sub-pixel, so no integer jitter
as with ``zoompan``."""

from __future__ import annotations

from flows.create.graph import num
from flows.create.sxml import Filter
from flows.create.timeline import Modifier, VisualClip

KENBURNS_ZOOM = 1.2
"""Zoom at the far end of a Ken Burns move (1.0 at the other)."""
MAX_ZOOM = 4.0
"""Largest zoom drawn (adapter filters here; animators in ``modifiers.py``): a bigger one
is clamped."""
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
MOTION_ADAPTERS = frozenset(("kenburnsAdapter", "zoomAdapter", "panoramicAdapter"))
"""Adapter filters (§11.1) that move a picture of an effect: a Ken Burns move whose
``zoomStart``/``zoomEnd`` (magnification, 1 = the whole picture; at most ``zoomLimit``) and
``centerStart``/``centerEnd`` (``x,y`` fractions of the picture) they may set."""
ADAPTERS = MOTION_ADAPTERS | {"fixedAdapter"}
"""All adapter filters; ``fixedAdapter`` holds the picture still."""


def adapter_of(modifiers: list[Modifier]) -> Filter | None:
    """The last adapter filter among a clip's ``modifiers``, if any."""
    return next((m.node for m in reversed(modifiers) if getattr(m.node, "type", "") in ADAPTERS), None)


def kenburns(clip: VisualClip, first: int, total: int, start: int, size: tuple[int, int],
             adapter: Filter | None = None) -> list[str]:
    """The filters moving ``clip``'s picture (``size`` pixels): the move lasts ``total`` frames
    from absolute frame ``first``; the stream being filtered starts at frame ``start``; an
    ``adapter`` filter may set its zooms and centres."""
    effect = clip.effect
    span = max(1, total - 1)
    negative = str(effect.params.get("direction", "") or "").strip() in ("negative", "right", "down")
    (cx0, cy0), (cx1, cy1) = KENBURNS_DRIFTS[(clip.slot + sum(clip.path)) % len(KENBURNS_DRIFTS)]
    z0, z1 = 1.0, KENBURNS_ZOOM
    if negative:
        z0, z1, cx0, cy0, cx1, cy1 = z1, z0, cx1, cy1, cx0, cy0
    if adapter is not None:
        params = adapter.params
        limit = max(1.0, float(params.get("zoomLimit") or MAX_ZOOM))
        z0, z1 = (min(limit, max(1.0, float(params.get(name) or default)))
                  for name, default in (("zoomStart", z0), ("zoomEnd", z1)))
        cx0, cy0 = params.get("centerStart") or (cx0, cy0)
        cx1, cy1 = params.get("centerEnd") or (cx1, cy1)
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


def moves(clip: VisualClip, adapter: Filter | None = None) -> bool:
    """Whether ``clip``'s picture gets a Ken Burns move: in a moving effect (a ``diving`` with
    several pictures zooms between them instead), or any effect's picture with a moving
    ``adapter`` filter (``fixedAdapter``: never)."""
    effect = clip.effect
    if effect is None:
        return False
    if adapter is not None:
        return adapter.type in MOTION_ADAPTERS
    return effect.type in MOVING_EFFECTS and not (effect.type == "diving" and clip.slots > 1)

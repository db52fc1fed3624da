"""Transitions (spec §7) as ffmpeg ``xfade`` over the exact overlap of two streams, and the
passage from one picture to the next inside a multi-picture effect (§4.5, §6)."""

from __future__ import annotations

from dataclasses import replace

from flows.create.graph import FilterGraph, Stream
from flows.create.timeline import TransitionClip

TRANSITIONS = {
    "crossfade": "fade", "circle": "circleopen", "radial": "radial", "waterdrop": "circleopen",
    "swirl": "dissolve", "spiral": "radial", "strip": "hlslice", "scans": "vuslice",
    "custom": "fade",
}
"""SXML transition types -> ffmpeg ``xfade`` transitions (the directional ones are below)."""
DIRECTIONAL = {"move": "slide", "cube": "slide", "dualmove": "slide", "over": "smooth", "under": "wipe",
               "scan": "wipe"}
"""Directional SXML transitions -> the ``xfade`` family taking a direction suffix."""
DIRECTIONS = {"left": "left", "right": "right", "up": "up", "down": "down", "positive": "left",
              "negative": "right"}
SLIDING_EFFECTS = frozenset(("sliding", "rotator", "square", "diving"))
"""Effects showing their pictures one after another, each entering over the previous one."""
SLIDE_TRANSITIONS = {"sliding": "slideleft", "diving": "zoomin", "rotator": "squeezeh", "square": "rectcrop"}
"""How a multi-picture effect passes from one picture to the next (``xfade`` types)."""
SLIDE_TIME = 0.6
"""Seconds a picture of a multi-picture effect takes to enter over the previous one."""


def xfade_type(clip: TransitionClip) -> str:
    """The ``xfade`` transition of an SXML ``transition``."""
    node = clip.transition
    kind = node.type
    if kind in DIRECTIONAL:
        direction = str(node.params.get("direction", "") or "").strip()
        return DIRECTIONAL[kind] + DIRECTIONS.get(direction, "left")
    return TRANSITIONS.get(kind, "fade")


def xfade(graph: FilterGraph, before: Stream, after: Stream, kind: str) -> list[Stream]:
    """``before`` then ``after``, blended by ``xfade`` over their overlap: only the overlap's
    frames go through the transition (``split``/``trim`` around it), as parts to concat."""
    overlap = before.end - after.start
    if overlap <= 0:
        return [before, after]
    if overlap >= after.frames or overlap > before.frames:
        return [before, graph.cut(after, overlap)] if overlap < after.frames else [before]
    alpha = before.alpha or after.alpha
    before, after = graph.as_format(before, alpha), graph.as_format(after, alpha)
    keep = before.frames - overlap
    parts: list[Stream] = []
    if keep > 0:
        head, tail = graph.label(), graph.label()
        graph.chains.append(f"{before.label}split{head}{tail}")
        parts.append(replace(before, label=graph.chain(head, [f"trim=end_frame={keep}"]), frames=keep))
        outgoing = graph.chain(tail, [f"trim=start_frame={keep}", "setpts=N"])
    else:
        outgoing = before.label
    enter, rest = graph.label(), graph.label()
    graph.chains.append(f"{after.label}split{enter}{rest}")
    entering = graph.chain(enter, [f"trim=end_frame={overlap}"])
    mixed = graph.label()
    graph.chains.append(f"{outgoing}{entering}xfade=transition={kind}:duration={graph.seconds(overlap)}:offset=0,"
                        f"format={'yuva420p' if alpha else 'yuv420p'},settb={graph.tb},setpts=N{mixed}")
    parts.append(Stream(mixed, after.start, overlap, alpha=alpha))
    remaining = graph.chain(rest, [f"trim=start_frame={overlap}", "setpts=N"])
    parts.append(replace(after, label=remaining, start=after.start + overlap, frames=after.frames - overlap))
    return parts

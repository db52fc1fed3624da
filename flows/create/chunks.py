"""Where a long movie is cut to render it in bounded memory: frame windows of about
``seconds`` each, cut only where the cut changes nothing in the picture.

One ffmpeg graph for a whole movie keeps memory for every part of it until it ends (each
input's first frame, the frame pools of every filter), so its peak grows with the number of
pictures. A long movie is rendered window by window instead (``render.build``), each window a
graph holding only what it shows.

A window of the plan draws the records that intersect it, cut to it. That is exact for still
pictures and texts (a looped frame), Ken Burns pictures (their move is computed from the
effect's span, not the clip's start) and containers; it is not for the records that count
time from their own start or need their neighbours: transitions (the overlap of two items,
not even cut at its ends),
videos (decoded from their start), multi-picture effects (slots entering over each other) and
anything with a filter or animator. No cut falls strictly inside one of those ("atomic"
records); a movie without any possible cut renders in one window.
"""

from __future__ import annotations

from fractions import Fraction

from flows.create.graph import frame_at
from flows.create.sxml import Effect, Video
from flows.create.timeline import Clip, Group, Plan, VisualClip

Window = tuple[int, int]
"""Frames ``[first, end)`` of the movie."""


def atomic(plan: Plan, record: Clip) -> bool:
    """Whether ``record`` must be drawn whole by one window."""
    if plan.modifiers_of(record.path):
        return True
    if isinstance(record, VisualClip):
        return isinstance(record.media, Video) or record.slots > 1
    if isinstance(record, Group):
        return isinstance(record.node, Effect) and len(record.node.media) > 1
    return False


def windows(plan: Plan, rate: Fraction, seconds: float) -> list[Window]:
    """The movie's frames in windows of about ``seconds`` (the nearest possible cut at or before
    each target, else the first after it)."""
    total = frame_at(plan.duration, rate)
    target = max(1, frame_at(seconds, rate))
    whole = [r for r in (*plan.visuals, *plan.texts, *plan.groups) if atomic(plan, r)]
    spans = sorted([*((frame_at(r.start, rate), frame_at(r.end, rate)) for r in whole),
                    # a transition needs a frame of its items on both sides of it: no cut at its ends
                    *((frame_at(t.start, rate) - 1, frame_at(t.end, rate) + 1) for t in plan.transitions)])
    blocked: list[list[int]] = []  # merged open intervals (a, b): no cut at a < f < b
    for a, b in spans:
        if b - a < 2:
            continue
        if blocked and a < blocked[-1][1]:
            blocked[-1][1] = max(blocked[-1][1], b)
        else:
            blocked.append([a, b])

    def cut_near(frame: int, after: int) -> int:
        """A cut at ``frame`` or the nearest allowed one before it (after ``after``), else after it."""
        for a, b in blocked:
            if a < frame < b:
                return a if a > after else b
        return frame

    cuts, cursor = [], 0
    while total - cursor > target:
        cut = cut_near(cursor + target, cursor)
        if cut >= total:
            break
        cuts.append(cut)
        cursor = cut
    edges = [0, *cuts, total]
    return list(zip(edges, edges[1:]))

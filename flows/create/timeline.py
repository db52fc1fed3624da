"""The timing model (spec §4) as a pure function: ``plan(movie, lengths) -> Plan``.

Two passes over the parsed tree:

1. bottom-up, each node's *intrinsic* duration (``None`` = flexible): explicit ``duration``;
   video/audio media length (``lengths[url]``, minus ``skip``, over ``speed``); speech length
   (``lengths[Speech]``); stack/overlay = max of its children's extents (margins included);
   sequence = sum of its items minus the transitions' overlaps; an effect with a video child =
   the sum of its media slots; ``duration=".."`` slaves are excluded;
2. top-down, absolute spans: a flexible or slave child gets its parent's span minus its
   margins (a flexible child of a sequence gets ``DEFAULT_DURATION``), a fixed child keeps its
   length (``margin-end`` without ``margin-start`` anchors it to the parent's end) and is
   truncated by a shorter parent; transitions overlap their neighbours (clamped to them);
   multi-media effects split their time into slots (§4.5).

The result is flat and render-ready: every drawn leaf (``VisualClip``, ``TextClip``), every
``TransitionClip``, ``AudioClip`` and ``Modifier`` (filter/animator) with an absolute
``[start, end)`` in seconds, and every container as a ``Group``. Each record has a ``path``
(indexes from the body down): sorting by path is the paint order (back to front), and a
path prefix says which group a record belongs to (what a transition blends, what a stack
filter post-processes). Theme widgets are expanded to the slideshow fallback of §13
(``expand_widget``) before timing; there an item's ``duration`` is how long it is shown alone,
and the crossfades between items are added to it (the sequence rule above then gives a movie
of the items' durations plus the crossfades).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from flows.create.sxml import (
    Animator,
    Audio,
    Box,
    Color,
    Effect,
    Filter,
    Image,
    Movie,
    Node,
    Overlay,
    Params,
    Sequence,
    Speech,
    Stack,
    Text,
    Timing,
    Track,
    Transition,
    Video,
    Widget,
)

DEFAULT_DURATION = 5.0
"""Length of a flexible item of a sequence, and of a movie with nothing timed (§4.3)."""
THEME_IMAGE_DURATION = 4.0
"""A theme widget's image without ``duration`` (§13: ~3-5 s)."""
THEME_CARD_DURATION = 3.0
"""A theme widget's text card without ``duration``."""
THEME_CROSSFADE = 1.0
"""The crossfade between a theme widget's items: added to their durations, never taken from them."""
THEME_BACKGROUND = Color(0, 0, 0)
"""The plate behind a theme widget's text cards."""
LOWER_THIRD = Box(bottom=0.06, height=0.14, left=0.05, right=0.05)
"""Where a ``legend`` text without placement goes (and theme captions)."""

Path = tuple[int, ...]
"""A node's position: child indexes from the body down. Sorted order = paint order."""


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, kw_only=True)
class Clip:
    """Something on the timeline during ``[start, end)`` (absolute seconds)."""

    path: Path
    line: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, kw_only=True)
class Group(Clip):
    """A container's span: ``kind`` is body/sequence/stack/effect/overlay/widget. Its
    ``node`` carries the effect type/params or the overlay ``box``."""

    kind: str
    node: Node


@dataclass(frozen=True, kw_only=True)
class VisualClip(Clip):
    """One image/colour/video shown full frame by an ``effect`` (slot ``slot`` of ``slots``
    in the effect's span ``[effect_start, effect_end)``), or, with ``effect`` None, placed in
    ``box`` (an overlay's; None = full frame). ``length``: playable seconds of a video
    (from its ``skip``, at its ``speed``); when the clip is longer, hold the last frame."""

    media: Image | Video
    effect: Effect | None
    slot: int = 0
    slots: int = 1
    effect_start: float
    effect_end: float
    box: Box | None = None
    length: float | None = None


@dataclass(frozen=True, kw_only=True)
class TextClip(Clip):
    """A text drawn in ``box`` (its own placement, else the enclosing overlay's, else the
    lower third for a legend, else the full frame)."""

    text: Text
    box: Box


@dataclass(frozen=True, kw_only=True)
class TransitionClip(Clip):
    """``[start, end)`` is the overlap where the item at ``before`` blends into the item at
    ``after`` (siblings under the transition's sequence; each a group or a clip path)."""

    transition: Transition
    before: Path
    after: Path


@dataclass(frozen=True, kw_only=True)
class AudioClip(Clip):
    """A sound playing during ``[start, end)`` from ``skip`` seconds into ``source`` (a URL, or
    a ``Speech`` to synthesise), at ``speed`` and ``volume``, with linear ``fadein``/``fadeout``
    (the node's own, widened by the crossfades of the transitions around it). ``length``:
    playable seconds of the source (``loop`` repeats it; else silence after it). ``video``:
    the sound track of a video (skip it if the file has none). ``duck``: duck-* params."""

    source: str | Speech
    skip: float = 0.0
    speed: float = 1.0
    volume: float = 1.0
    fadein: float = 0.0
    fadeout: float = 0.0
    loop: bool = False
    length: float | None = None
    video: bool = False
    duck: Params = Params()


@dataclass(frozen=True, kw_only=True)
class Modifier(Clip):
    """A filter or animator active during ``[start, end)`` on the node at ``path`` (a clip's
    or a group's: then on the composite of everything under it)."""

    node: Filter | Animator


@dataclass(frozen=True)
class Plan:
    """The whole movie laid out: ``duration`` seconds and every record, each in path order."""

    duration: float
    groups: tuple[Group, ...]
    visuals: tuple[VisualClip, ...]
    texts: tuple[TextClip, ...]
    transitions: tuple[TransitionClip, ...]
    audio: tuple[AudioClip, ...]
    modifiers: tuple[Modifier, ...]
    warnings: tuple[str, ...] = ()

    def layers(self) -> list[VisualClip | TextClip]:
        """Everything drawn, back to front."""
        return sorted((*self.visuals, *self.texts), key=lambda clip: clip.path)

    def modifiers_of(self, path: Path) -> list[Modifier]:
        """The filters and animators on the node at ``path``, in document order."""
        return [m for m in self.modifiers if m.path == path]


# --------------------------------------------------------------------------- theme widgets (§13)


def expand_widget(widget: Widget, playable: Callable[[Video], float]) -> Stack:
    """The slideshow fallback of a theme widget: its items in a crossfaded sequence (images
    with kenburns and their captions as lower thirds, videos, text cards on a plain plate)
    under its soundtrack, which loops and follows the pictures (``..``) unless it has a duration.

    An item's ``duration`` is how long it is shown alone (its caption readable): each item
    lasts that plus the crossfades on its sides, so the movie lasts the sum of the items'
    durations plus one ``THEME_CROSSFADE`` between each two. ``playable``: a video's length."""
    nodes: list[Image | Video | Text] = []
    sounds: list[Audio] = []

    def collect(children: tuple[Node, ...]) -> None:
        for node in children:
            if isinstance(node, Track):
                if node.type == "audio":
                    sounds.extend(n for n in node.children if isinstance(n, Audio))
                elif node.type != "caption":
                    collect(node.children)
            elif isinstance(node, Audio):
                sounds.append(node)
            elif isinstance(node, (Image, Video, Text)):
                nodes.append(node)

    collect(widget.children)
    sequence: list[Node] = []
    for index, node in enumerate(nodes):
        if sequence:
            sequence.append(Transition(line=node.line, type="crossfade", duration=THEME_CROSSFADE))
        sides = (index > 0) + (index < len(nodes) - 1)
        sequence.append(_theme_item(node, playable, sides * THEME_CROSSFADE))
    music = [
        replace(a, loop=True, timing=a.timing if a.timing.duration is not None else replace(a.timing, slave=True))
        for a in sounds
    ]
    return Stack(line=widget.line, timing=widget.timing, children=(Sequence(line=widget.line, children=tuple(sequence)), *music))


def _theme_item(node: Image | Video | Text, playable: Callable[[Video], float], crossfades: float) -> Stack:
    """One theme item: shown alone for its duration, plus ``crossfades`` seconds of blending
    with its neighbours (a video starts with its incoming crossfade, its last frame held)."""
    if isinstance(node, Video):
        shown = node.timing.duration if node.timing.duration is not None else playable(node)
        content: tuple[Node, ...] = (Effect(line=node.line, timing=Timing(slave=True), type="none",
                                            children=(replace(node, timing=Timing(duration=shown)),)),)
    elif isinstance(node, Image):
        shown = node.timing.duration or THEME_IMAGE_DURATION
        effect = Effect(
            line=node.line,
            type="none" if node.kind == "map" else "kenburns",
            children=(replace(node, timing=Timing(), captions=()),),
        )
        content = (effect, *(replace(c, kind="legend", timing=Timing()) for c in node.captions))
    else:
        shown = node.timing.duration or THEME_CARD_DURATION
        plate = Effect(line=node.line, type="none", children=(Image(line=node.line, color=THEME_BACKGROUND),))
        content = (plate, *((replace(node, kind="zone", timing=Timing()),) if node.text else ()))
    return Stack(line=node.line, timing=Timing(duration=shown + crossfades), children=content)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class _Layout:
    """A sequence's items and transitions, offsets relative to the sequence start."""

    items: tuple[tuple[int, Node, float, float], ...]  # (child index, node, offset, extent)
    transitions: tuple[tuple[int, Transition, float, float, int, int], ...]  # (index, node, start, end, before, after)
    total: float


@dataclass(frozen=True)
class _Env:
    """What a node inherits: the enclosing overlay's box and the transition crossfades
    ``(item_start, fade_in, item_end, fade_out)`` of the sequence items it is in."""

    box: Box | None = None
    xfades: tuple[tuple[float, float, float, float], ...] = ()


def _r(t: float) -> float:
    return round(t, 6)


def _any_video(weights: list[float | None]) -> bool:
    return any(w is not None for w in weights)


def _or_default(weight: float | None) -> float:
    return DEFAULT_DURATION if weight is None else weight


class _Timer:
    """Computes intrinsic durations (memoised per node) and lays nodes out into records."""

    def __init__(self, lengths: dict[str | Speech, float]):
        self.lengths = lengths
        self.warnings: list[str] = []
        self._intrinsic: dict[int, float | None] = {}
        self._layouts: dict[int, _Layout] = {}
        self._widgets: dict[int, Stack] = {}
        self.groups: list[Group] = []
        self.visuals: list[VisualClip] = []
        self.texts: list[TextClip] = []
        self.transitions: list[TransitionClip] = []
        self.audio: list[AudioClip] = []
        self.modifiers: list[Modifier] = []

    # ---- bottom-up

    def length_of(self, key: str | Speech) -> float:
        try:
            return float(self.lengths[key])
        except KeyError:
            raise ValueError(f"no media length given for {key!r}") from None

    def playable(self, node: Video | Audio) -> float:
        """Seconds of the source after ``skip``, at ``speed``."""
        key = node.speech or node.filename if isinstance(node, Audio) else node.filename
        skip = 0.0 if isinstance(key, Speech) else node.skip
        return max(0.0, self.length_of(key) - skip) / node.speed

    def widget(self, node: Widget) -> Stack:
        """The widget's expansion, built once (its nodes' ids key the memos)."""
        if id(node) not in self._widgets:
            self._widgets[id(node)] = expand_widget(node, self.playable)
        return self._widgets[id(node)]

    def intrinsic(self, node: Node) -> float | None:
        """The node's own length, or None if it is flexible (or a ``..`` slave)."""
        key = id(node)
        if key not in self._intrinsic:
            self._intrinsic[key] = self._compute(node)
        return self._intrinsic[key]

    def _compute(self, node: Node) -> float | None:
        if node.timing.slave:
            return None
        if isinstance(node, Widget):
            return self.intrinsic(self.widget(node))
        if node.timing.duration is not None:
            return node.timing.duration
        if isinstance(node, (Video, Audio)):
            return self.playable(node)
        if isinstance(node, Effect):
            weights = self.slot_weights(node)
            return sum(_or_default(w) for w in weights) if _any_video(weights) else None
        if isinstance(node, (Stack, Overlay)):
            extents = [e for e in map(self.extent, node.children) if e is not None]
            return max(extents) if extents else None
        if isinstance(node, Sequence):
            layout = self.layout(node)
            return layout.total if layout.items else None
        return None

    def extent(self, node: Node) -> float | None:
        """Intrinsic length plus margins: what a fixed child asks of its parent."""
        own = self.intrinsic(node)
        if own is None:
            return None
        return own + (node.timing.margin_start or 0.0) + (node.timing.margin_end or 0.0)

    def slot_weights(self, effect: Effect) -> list[float | None]:
        """Each media child's own length (videos), None for stills."""
        return [self.intrinsic(m) if isinstance(m, Video) else None for m in effect.media]

    def layout(self, sequence: Sequence) -> _Layout:
        key = id(sequence)
        if key not in self._layouts:
            self._layouts[key] = self._layout(sequence)
        return self._layouts[key]

    def _layout(self, sequence: Sequence) -> _Layout:
        items: list[tuple[int, Node, float, float]] = []
        transitions = []
        pending: tuple[int, Transition] | None = None
        cursor = free = 0.0  # free: what the last item has left after its incoming transition
        for index, child in enumerate(sequence.children):
            if isinstance(child, Transition):
                if not items:
                    self.warn(child, "has no item before it: ignored")
                    continue
                if pending is not None:
                    self.warn(pending[1], "is followed by another transition: ignored")
                pending = (index, child)
                continue
            if child.timing.slave:
                continue
            extent = self.extent(child)
            if extent is None:
                extent = DEFAULT_DURATION + (child.timing.margin_start or 0.0) + (child.timing.margin_end or 0.0)
            start, free_next = cursor, extent
            if pending is not None:
                overlap = min(pending[1].duration, free, extent)
                if overlap < pending[1].duration:
                    self.warn(pending[1], f"is longer than a neighbour: shortened to {_r(overlap)} s")
                start = cursor - overlap
                transitions.append((pending[0], pending[1], start, start + overlap, items[-1][0], index))
                free_next, pending = extent - overlap, None
            items.append((index, child, start, extent))
            cursor, free = start + extent, free_next
        if pending is not None:
            self.warn(pending[1], "has no item after it: ignored")
        return _Layout(tuple(items), tuple(transitions), cursor)

    def warn(self, node: Node, message: str) -> None:
        warning = f"line {node.line}: <{node.tag}> {message}"
        if warning not in self.warnings:
            self.warnings.append(warning)

    # ---- top-down

    def span(self, node: Node, start: float, room: float) -> tuple[float, float]:
        """Absolute start and duration of ``node`` in the ``room`` seconds its parent gives it
        from ``start`` (§4.1 margins, §4.3 propagation, truncation by the parent)."""
        margin_start, margin_end = node.timing.margin_start, node.timing.margin_end
        own = self.intrinsic(node)
        if isinstance(node, Animator) and node.type in ("slide-out", "rot-out") and margin_start is None \
                and margin_end is None:
            margin_end = 0.0  # slide-out (and rot-out) sit at the end of their node (§11.2)
        if own is None:
            offset = margin_start or 0.0
            duration = room - offset - (margin_end or 0.0)
        else:
            duration = own
            if margin_start is not None:
                offset = margin_start
            elif margin_end is not None:
                offset = max(0.0, room - margin_end - own)
            else:
                offset = 0.0
        duration = max(0.0, min(duration, room - offset - (margin_end or 0.0)))
        return start + offset, duration

    def place(self, node: Node, path: Path, start: float, room: float, env: _Env) -> None:
        """Lay ``node`` out in ``[start, start + room)`` and record it and its descendants."""
        if isinstance(node, Widget):
            node = self.widget(node)
            self.place_children(node, path, *self.span(node, start, room), env, kind="widget")
            return
        begin, duration = self.span(node, start, room)
        end = begin + duration
        self.modify(node, path, begin, duration)
        if isinstance(node, Sequence):
            self.place_sequence(node, path, begin, duration, env)
        elif isinstance(node, Stack):
            self.place_children(node, path, begin, duration, env, kind="stack")
        elif isinstance(node, Overlay):
            self.place_children(node, path, begin, duration, replace(env, box=node.box), kind="overlay")
        elif isinstance(node, Effect):
            self.place_effect(node, path, begin, duration, env)
        elif isinstance(node, (Image, Video)):
            self.add_visual(node, path, begin, end, env, effect=None)
        elif isinstance(node, Text):
            box = node.box if node.box.placed else env.box or (LOWER_THIRD if node.kind == "legend" else Box())
            self.texts.append(TextClip(path=path, line=node.line, start=_r(begin), end=_r(end), text=node, box=box))
        elif isinstance(node, Audio):
            self.add_audio(node, node.filename or node.speech, path, begin, end, env)

    def modify(self, node: Node, path: Path, begin: float, duration: float) -> None:
        for modifier in (*node.filters, *node.animators):
            mod_start, mod_duration = self.span(modifier, begin, duration)
            self.modifiers.append(
                Modifier(path=path, line=modifier.line, start=_r(mod_start), end=_r(mod_start + mod_duration), node=modifier)
            )

    def group(self, node: Node, path: Path, begin: float, duration: float, kind: str) -> None:
        self.groups.append(Group(path=path, line=node.line, start=_r(begin), end=_r(begin + duration), kind=kind, node=node))

    def place_children(self, node: Stack | Overlay, path: Path, begin: float, duration: float, env: _Env, kind: str) -> None:
        self.group(node, path, begin, duration, kind)
        for index, child in enumerate(node.children):
            self.place(child, (*path, index), begin, duration, env)

    def place_sequence(self, node: Sequence, path: Path, begin: float, duration: float, env: _Env) -> None:
        self.group(node, path, begin, duration, "body" if not path else "sequence")
        layout, end = self.layout(node), begin + duration
        fades = {i: [0.0, 0.0] for i, *_ in layout.items}
        kept: set[int] = set()
        for index, child, offset, extent in layout.items:
            if begin + offset < end:
                kept.add(index)
        for index, transition, t_start, t_end, before, after in layout.transitions:
            if after in kept:
                fades[before][1] = fades[after][0] = t_end - t_start
                self.transitions.append(TransitionClip(
                    path=(*path, index), line=transition.line, start=_r(begin + t_start),
                    end=_r(min(end, begin + t_end)), transition=transition,
                    before=(*path, before), after=(*path, after),
                ))
        for index, child, offset, extent in layout.items:
            if index not in kept:
                continue
            item_start = begin + offset
            room = min(extent, end - item_start)
            fade_in, fade_out = fades[index]
            item_env = env
            if fade_in or fade_out:
                item_env = replace(env, xfades=(*env.xfades, (item_start, fade_in, item_start + room, fade_out)))
            self.place(child, (*path, index), item_start, room, item_env)
        for index, child in enumerate(node.children):
            if child.timing.slave and not isinstance(child, Transition):
                self.place(child, (*path, index), begin, duration, env)

    def place_effect(self, node: Effect, path: Path, begin: float, duration: float, env: _Env) -> None:
        """Media children in successive slots (§4.5); other children over the whole effect."""
        self.group(node, path, begin, duration, "effect")
        media = node.media
        weights = self.slot_weights(node)
        if node.timing.duration is None and not node.timing.slave and _any_video(weights):
            slots = [_or_default(w) for w in weights]
        else:
            slots = [duration / len(media)] * len(media) if media else []
        cursor, end, slot = begin, begin + duration, 0
        for index, child in enumerate(node.children):
            if not isinstance(child, (Image, Video)):
                self.place(child, (*path, index), begin, duration, env)
                continue
            if cursor < end:
                slot_end = min(end, cursor + slots[slot])
                clip_start = min(slot_end, cursor + (child.timing.margin_start or 0.0))
                self.modify(child, (*path, index), clip_start, slot_end - clip_start)
                self.add_visual(child, (*path, index), clip_start, slot_end, env, effect=node, slot=slot,
                                slots=len(media), effect_span=(begin, end))
                cursor = slot_end
            slot += 1

    def add_visual(self, media: Image | Video, path: Path, begin: float, end: float, env: _Env, *,
                   effect: Effect | None, slot: int = 0, slots: int = 1,
                   effect_span: tuple[float, float] | None = None) -> None:
        length = None
        if isinstance(media, Video):
            playable = self.playable(media)
            length = min(playable, media.timing.duration) if media.timing.duration is not None else playable
            if media.audio:
                self.add_audio(media, media.filename, path, begin, min(end, begin + length), env, length=length)
        span_start, span_end = effect_span or (begin, end)
        self.visuals.append(VisualClip(
            path=path, line=media.line, start=_r(begin), end=_r(end), media=media, effect=effect,
            slot=slot, slots=slots, effect_start=_r(span_start), effect_end=_r(span_end),
            box=None if effect is not None else env.box, length=None if length is None else _r(length),
        ))

    def add_audio(self, node: Audio | Video, source: str | Speech, path: Path, begin: float, end: float,
                  env: _Env, length: float | None = None) -> None:
        if end <= begin:
            return
        fadein = node.fadein if isinstance(node, Audio) else 0.0
        fadeout = node.fadeout if isinstance(node, Audio) else 0.0
        for item_start, fade_in, item_end, fade_out in env.xfades:
            if fade_in and begin < item_start + fade_in:
                fadein = max(fadein, item_start + fade_in - begin)
            if fade_out and end > item_end - fade_out:
                fadeout = max(fadeout, end - (item_end - fade_out))
        duration = end - begin
        is_audio = isinstance(node, Audio)
        self.audio.append(AudioClip(
            path=path, line=node.line, start=_r(begin), end=_r(end), source=source,
            skip=0.0 if isinstance(source, Speech) else node.skip, speed=node.speed, volume=node.volume,
            fadein=_r(min(fadein, duration)), fadeout=_r(min(fadeout, duration)),
            loop=node.loop if is_audio else False,
            length=_r(self.playable(node) if length is None else length),
            video=not is_audio, duck=Params(tuple((k, v) for k, v in node.params.items if k.startswith("duck-"))),
        ))


def plan(movie: Movie, lengths: dict[str | Speech, float] | None = None) -> Plan:
    """Lay the movie out. ``lengths``: seconds of every video/audio URL and every ``Speech``
    in the definition (the flow probes/synthesises them); raises ValueError if one is missing."""
    timer = _Timer(dict(lengths or {}))
    body = movie.body
    total = timer.extent(body)
    if total is None:
        total = DEFAULT_DURATION + (body.timing.margin_start or 0.0) + (body.timing.margin_end or 0.0)
    timer.place(body, (), 0.0, total, _Env())
    by_path = lambda clip: clip.path  # noqa: E731
    return Plan(
        duration=_r(total),
        groups=tuple(sorted(timer.groups, key=by_path)),
        visuals=tuple(sorted(timer.visuals, key=by_path)),
        texts=tuple(sorted(timer.texts, key=by_path)),
        transitions=tuple(sorted(timer.transitions, key=by_path)),
        audio=tuple(sorted(timer.audio, key=by_path)),
        modifiers=tuple(timer.modifiers),
        warnings=tuple(timer.warnings),
    )

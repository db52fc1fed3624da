"""The plan's tree as a video filter graph: groups composite their children, leaves become streams.

The graph follows the plan's tree (``path`` prefixes): every drawn leaf is a stream (full
frame, or a box at ``x, y``), a group composites its children:

- ``body``/``sequence``: items one after another (``concat``), transitions as ``xfade`` over
  the exact overlap from the ``TransitionClip`` (``transitions.py``), gaps as black (body) or
  transparent (nested) plates, overlapping items without a transition overlaid;
- ``stack``/``overlay``/``widget``/``effect``: children painted back to front with ``overlay``
  at their start frame (the first child is the base when it is an opaque full-frame picture
  covering the span, else a transparent plate); an effect's media slots form a sequence, or
  for a multi-picture effect (``sliding``, ``diving``, ``rotator``, ``square``) enter one over
  the other during ``SLIDE_TIME``;
- ``image``: a still prepared by ``stills.Stills`` fitted to the frame (effect ``none``:
  cover-crop, "fill"; ``adapter="none"``/``fitAdapter``: letterboxed, "fit") and looped, or a
  ``color=`` plate; moving effects add a Ken Burns move (``motion.py``); ``video``: decoded
  from ``skip`` (an input seek), ``speed``, constant frame rate, converted to BT.709 limited
  range, fill/fit, its last frame held when its slot is longer (``tpad``);
- ``overlay`` content: pictures scaled into the ``Box`` (stretched when both width and height
  are given, aspect kept otherwise, letterboxed transparent with ``fitAdapter``); ``text``: the
  RGBA image of ``text.render_text`` (supersampled by ``antialias``) overlaid at its box;
- modifiers (``modifiers.py``) on every node's stream.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from flows.create import modifiers
from flows.create.graph import FilterGraph, Stream, frame_at, num
from flows.create.motion import adapter_of, kenburns, moves
from flows.create.profiles import Profile
from flows.create.sxml import Effect, Filter, Image, Speech, Video
from flows.create.chunks import Window
from flows.create.stills import Stills
from flows.create.timeline import Clip, Group, Plan, TextClip, VisualClip
from flows.create.transitions import SLIDE_TIME, SLIDE_TRANSITIONS, SLIDING_EFFECTS, xfade, xfade_type
from flows.steps.tools.ffmpeg import input_args
from flows.steps.tools.probe import MediaProbe

BT709 = "out_color_matrix=bt709:out_range=tv"
"""``scale`` options converting a decoded video to the movie's colours (from its own tags;
untagged = BT.601)."""


@dataclass(frozen=True)
class Media:
    """What the flow gathered for a plan: the local ``files`` of every URL (pictures, videos,
    sounds, fonts) and ``Speech``, the ffprobe of every video/audio URL, font files by name."""

    files: dict[str | Speech, Path]
    probes: dict[str, MediaProbe] = field(default_factory=dict)
    fonts: dict[str, Path] = field(default_factory=dict)


class Scene(FilterGraph):
    """The video graph of one render of ``plan``, or of its frames ``window`` (``chunks.py``:
    frames are then counted from the window's first, and only what it shows is drawn)."""

    def __init__(self, plan: Plan, media: Media, profile: Profile, stills: Stills, antialias: int,
                 window: Window | None = None):
        super().__init__(profile)
        self.plan, self.media = plan, media
        self.antialias = antialias
        self.stills = stills
        self.first = 0  # frame() counts from it
        self.first, end = window or (0, self.frame(plan.duration))
        self.total = end - self.first
        self.children: dict[tuple, list[Clip]] = defaultdict(list)
        for record in (*plan.groups, *plan.visuals, *plan.texts):
            if record.path and self.frame(record.end) > 0 and self.frame(record.start) < self.total:
                self.children[record.path[:-1]].append(record)
        for kids in self.children.values():
            kids.sort(key=lambda r: r.path)
        self.incoming = {t.after: t for t in plan.transitions}
        self.root = next((g for g in plan.groups if g.path == ()), None)

    def frame(self, seconds: float) -> int:
        """The frame shown at ``seconds``, counted from the window's first (a length of time in
        frames is ``frame_at``)."""
        return super().frame(seconds) - self.first

    # ---- the tree

    def build(self) -> str:
        """The whole graph; returns the label of the final video stream."""
        total = self.total
        stream = self.render(self.root) if self.root is not None else None
        if stream is None:
            stream = self.plate(0, total, "black", alpha=False)
        stream = self.full(stream)
        if stream.alpha:
            stream = self.overlay(self.plate(stream.start, stream.frames, "black", alpha=False), stream)
        stream = self.fit_span(stream, 0, total, alpha_gaps=False)
        return self.chain(stream.label, ["format=yuv420p", "setsar=1"])

    def span(self, record: Clip) -> tuple[int, int]:
        """(start, frames) of ``record``, cut to the window."""
        start = max(0, self.frame(record.start))
        return start, min(self.total, self.frame(record.end)) - start

    def render(self, record: Clip) -> Stream | None:
        start, frames = self.span(record)
        if frames <= 0:
            return None
        if isinstance(record, Group):
            if record.kind in ("body", "sequence"):
                stream = self.sequence(record, self.children[record.path], start, frames)
            elif record.kind == "effect":
                stream = self.effect(record, start, frames)
            else:
                stream = self.stack(record, self.children[record.path], start, frames)
        elif isinstance(record, VisualClip):
            stream = self.visual(record, start, frames)
        elif isinstance(record, TextClip):
            stream = self.text(record, start, frames)
        else:
            return None
        if stream is not None:
            stream = self.modify(record, stream)
        return stream

    def modify(self, record: Clip, stream: Stream) -> Stream:
        return modifiers.apply(self, self.plan.modifiers_of(record.path), stream,
                               still=isinstance(record, VisualClip), cover=self.mask_cover)

    def mask_cover(self, node: Filter, stream: Stream) -> str | None:
        """The grey cover stream of the mask filter ``node`` for ``stream`` (its first
        ``<image>``: a picture or a colour), or None without one."""
        image = next((n for n in node.inputs if isinstance(n, Image)), None)
        source = None if image is None else image.color or self.media.files.get(image.filename)
        if source is None:
            return None
        size = (self.width, self.height) if stream.full else (stream.w, stream.h)
        target = self.stills.mask(source, size, node.type, node.params)
        return self.chain(self.still(target, True, stream.start, stream.frames, []).label, ["alphaextract"])

    def sequence(self, group: Group, kids: list[Clip], start: int, frames: int,
                 alpha_gaps: bool | None = None) -> Stream:
        if alpha_gaps is None:
            alpha_gaps = bool(group.path)
        gap = () if alpha_gaps else ("black", False)
        parts: list[Stream] = []
        cursor = start
        for kid in kids:
            stream = self.render(kid)
            if stream is None:
                continue
            stream = self.full(stream)
            transition = self.incoming.get(kid.path)
            if stream.start >= cursor:
                if stream.start > cursor:
                    parts.append(self.plate(cursor, stream.start - cursor, *gap))
                parts.append(stream)
            elif not parts:
                parts.append(self.cut(stream, cursor - stream.start))
            elif transition is not None and stream.end > cursor and parts[-1].end - stream.start <= parts[-1].frames:
                parts += xfade(self, parts.pop(), stream, xfade_type(transition))
            else:  # overlapping without a transition (a `..` item): painted over what is there
                chain = self.concat(parts)
                if stream.end > chain.end:
                    chain = self.concat([chain, self.plate(chain.end, stream.end - chain.end, *gap)])
                parts = [self.overlay(chain, stream)]
            cursor = max(cursor, parts[-1].end)
        if not parts:
            return self.plate(start, frames, *gap)
        return self.fit_span(self.concat(parts), start, frames, alpha_gaps)

    def stack(self, group: Group, kids: list[Clip], start: int, frames: int,
              first: Stream | None = None) -> Stream:
        streams = [first] if first is not None else []
        streams += [s for s in map(self.render, kids) if s is not None]
        if len(streams) == 1 and first is None and group.path and (streams[0].alpha or not streams[0].full):
            return streams[0]  # a lone drawing: no plate under it (its parent places it)
        if streams and streams[0].full and not streams[0].alpha and streams[0].start <= start \
                and streams[0].end >= start + frames:
            base = self.fit_span(streams.pop(0), start, frames, True)
        else:
            base = self.plate(start, frames)
        for stream in streams:
            base = self.overlay(base, stream)
        return base

    def effect(self, group: Group, start: int, frames: int) -> Stream:
        kids = self.children[group.path]
        slots = [k for k in kids if isinstance(k, VisualClip) and k.effect is not None]
        others = [k for k in kids if k not in slots]
        node = group.node
        media = None
        if slots:
            kind = node.type if isinstance(node, Effect) else "none"
            if kind in SLIDING_EFFECTS and len(slots) > 1:
                media = self.slides(slots, kind, start, frames)
            else:
                media = self.sequence(group, slots, start, frames, alpha_gaps=True)
        return self.stack(group, others, start, frames, first=media)

    def slides(self, slots: list[VisualClip], kind: str, start: int, frames: int) -> Stream:
        """A multi-picture effect: its slots in turn, each picture entering over the end of the
        previous one (``xfade`` over ``SLIDE_TIME``; the previous slot is held that much longer,
        so every slot keeps its start)."""
        spans = [self.span(slot) for slot in slots]
        chain: Stream | None = None
        for index, (slot, (slot_start, slot_frames)) in enumerate(zip(slots, spans)):
            if slot_frames <= 0:
                continue
            following = spans[index + 1][1] if index + 1 < len(spans) else 0
            extra = max(0, min(frame_at(SLIDE_TIME, self.rate), following - 1))
            stream = self.visual(slot, slot_start, slot_frames + extra)
            stream = self.full(self.modify(slot, stream))
            if chain is None:
                chain = self.fit_span(stream, start, stream.end - start, True) if stream.start > start else stream
            elif chain.end > stream.start:
                chain = self.concat(xfade(self, chain, stream, SLIDE_TRANSITIONS.get(kind, "slideleft")))
            else:
                chain = self.concat([chain, stream])
        if chain is None:
            return self.plate(start, frames)
        return self.fit_span(chain, start, frames, True)

    # ---- leaves

    def still(self, target: Path, alpha: bool, start: int, frames: int, motion: list[str]) -> Stream:
        """A prepared still looped for ``frames`` frames (then moved by ``motion``)."""
        index = self.add_input(input_args(target, "yuv4mpegpipe"))
        filters = [f"format={'yuva420p' if alpha else 'yuv420p'}", "setsar=1", "loop=loop=-1:size=1",
                   *self.retime(frames), *motion]
        return Stream(self.chain(f"[{index}:v]", filters), start, frames, alpha=alpha)

    def visual(self, clip: VisualClip, start: int, frames: int) -> Stream | None:
        media = clip.media
        if clip.effect is not None or clip.box is None:
            size, box = (self.width, self.height), None
        else:
            box = self.box_of(clip)
            size = (box[2], box[3])
        fit = self._fits(clip)
        if isinstance(media, Image):
            if media.color is not None:
                stream = self.still(*self.stills.color(media.color, size), start, frames, [])
            elif media.kind == "map" or not media.filename:
                self.warn(clip.line, "<image type=\"map\"> is not rendered: a grey plate instead")
                stream = self.plate(start, frames, "0x808080", alpha=False, size=size)
                stream.full = True
            else:
                path = self.media.files[media.filename]
                mode = "fill" if box is None else "box"
                if fit:
                    mode = "fit" if box is None else "contain"
                target, alpha = self.stills.picture(path, size, mode, clip, self.plan.modifiers_of(clip.path))
                stream = self.still(target, alpha, start, frames, self.motion(clip, start, frames, size))
        else:
            stream = self.video(clip, media, start, frames, size, fit)
        if box is not None:
            stream.full = False
            stream.x, stream.y = str(box[0]), str(box[1])
            stream.w, stream.h = box[2], box[3]
        return stream

    def _fits(self, clip: VisualClip) -> bool:
        if any(getattr(m.node, "type", "") == "fitAdapter" for m in self.plan.modifiers_of(clip.path)):
            return True
        if clip.effect is not None:
            adapter = str(clip.effect.params.get("adapter", "") or "").strip()
            return adapter in ("none", "fitAdapter")
        return False

    def box_of(self, clip: VisualClip) -> tuple[int, int, int, int]:
        """(x, y, w, h) in pixels of an overlay's picture or video."""
        aspect = None
        media = clip.media
        if isinstance(media, Video):
            probe = self.media.probes.get(media.filename)
            if probe is not None and probe.video is not None:
                w, h = probe.video.upright_size
                aspect = w / h if h else None
        elif media.filename and media.color is None and media.kind != "map":
            path = self.media.files.get(media.filename)
            if path is not None:
                aspect = self.stills.aspect(path, clip)
        fx, fy, fw, fh = clip.box.resolve(self.width / self.height, aspect)
        w = max(2, min(4 * self.width, round(fw * self.width)))
        h = max(2, min(4 * self.height, round(fh * self.height)))
        return round(fx * self.width), round(fy * self.height), w, h

    def motion(self, clip: VisualClip, start: int, frames: int, size: tuple[int, int]) -> list[str]:
        """The Ken Burns move of a picture in a moving effect (over the effect, or its slot)."""
        adapter = adapter_of([*(self.plan.modifiers_of(clip.path[:-1]) if clip.effect is not None else ()),
                              *self.plan.modifiers_of(clip.path)])  # on the effect, or on its picture
        if not moves(clip, adapter):
            return []
        if clip.slots == 1:
            first, total = self.frame(clip.effect_start), self.frame(clip.effect_end) - self.frame(clip.effect_start)
        else:
            first, total = start, frames
        return kenburns(clip, first, total, start, size, adapter)

    def video(self, clip: VisualClip, media: Video, start: int, frames: int, size: tuple[int, int],
              fit: bool) -> Stream:
        path = self.media.files[media.filename]
        probe = self.media.probes.get(media.filename)
        index = self.add_input(input_args(path, probe.format_name if probe else None, seek=media.skip or None))
        alpha = bool(probe and probe.video and probe.video.alpha)
        w, h = size
        filters = ["setpts=PTS-STARTPTS"]
        if media.speed != 1.0:
            filters.append(f"setpts=PTS/{num(media.speed)}")
        filters.append(f"fps={self.rate}")
        if clip.length is not None:
            filters.append(f"trim=end_frame={max(1, frame_at(clip.length, self.rate))}")
        if clip.box is not None and clip.effect is None and not fit:
            filters.append(f"scale={w}:{h}:{BT709}")
        elif fit:
            filters += [f"scale={w}:{h}:force_original_aspect_ratio=decrease:{BT709}",
                        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color={'black@0' if clip.box is not None else 'black'}"]
            alpha = alpha or clip.box is not None
        else:
            filters += [f"scale={w}:{h}:force_original_aspect_ratio=increase:{BT709}", f"crop={w}:{h}"]
        fmt = "yuva420p" if alpha else "yuv420p"
        filters += [f"format={fmt}", "setsar=1", "tpad=stop=-1:stop_mode=clone", *self.retime(frames)]
        filters += self.motion(clip, start, frames, size)
        return Stream(self.chain(f"[{index}:v]", filters), start, frames, alpha=alpha)

    def text(self, clip: TextClip, start: int, frames: int) -> Stream | None:
        from flows.create.text import render_text

        drawn = render_text(clip, (self.width, self.height), self.antialias, self.media.fonts)
        image = drawn.image
        if image.getbbox() is None:
            return None
        target, alpha = self.stills.write(image, "text")
        stream = self.still(target, alpha, start, frames, [])
        return Stream(stream.label, start, frames, full=False, alpha=alpha, x=str(drawn.x), y=str(drawn.y),
                      w=image.width, h=image.height)

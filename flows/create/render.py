"""The movie as one ffmpeg process: a ``Plan`` (timeline.py) -> an H.264/AAC MP4.

``build(plan, media, profile, work_dir)`` turns the plan into an ffmpeg command (inputs, a
``filter_complex`` script, the encode) and ``render_movie`` runs it through ``run_ffmpeg``
(timeout, progress). No Python touches a frame while ffmpeg runs: stills and texts are
prepared once with Pillow (decoded, oriented, scaled to the size they are shown at) and
handed to ffmpeg as single-frame YUV4MPEG files (``yuv4mpegpipe`` is on the input allow-list;
``C420jpeg`` for opaque pictures, ``C444alpha`` for pictures with transparency, full range),
each looped in the graph for as many frames as it is shown.

**Time** is counted in frames of the profile's rate: an absolute time ``t`` is frame
``round(t × fps)``, every stream of the graph has the time base ``1/fps`` and frame-exact
length, so a sequence's items, its transitions' overlaps and the whole movie add up to the
plan's duration to the frame.

**The graph** follows the plan's tree (``path`` prefixes): every drawn leaf is a stream
(full frame, or a box at ``x, y``), a group composites its children:

- ``body``/``sequence``: items one after another (``concat``), transitions as ``xfade`` over
  the exact overlap from the ``TransitionClip`` (``TRANSITIONS`` maps the SXML types), gaps as
  black (body) or transparent (nested) plates, overlapping items without a transition overlaid;
- ``stack``/``overlay``/``widget``/``effect``: children painted back to front with ``overlay``
  at their start frame (the first child is the base when it is an opaque full-frame picture
  covering the span, else a transparent plate); an effect's media slots form a sequence;
- ``image``: a file decoded by Pillow and fitted to the frame (effect ``none``: cover-crop,
  i.e. "fill"; ``adapter="none"``/``fitAdapter``: letterboxed, "fit"), or ``color=`` (ffmpeg's
  ``color`` source); ``video``: decoded from ``skip`` (an input seek), ``speed``, constant frame
  rate, fill/fit, its last frame held when its slot is longer (``tpad``);
- ``kenburns`` (and the exotic single-picture effects, documented approximations): a zoom
  1.0 -> ``KENBURNS_ZOOM`` (``direction="negative"``: the reverse) with a drift across the picture,
  computed in floating point per frame and sampled with bilinear interpolation by ffmpeg's
  ``perspective`` filter (sub-pixel, so no integer jitter as with ``zoompan``);
- multi-picture effects (``sliding``, ``diving``, ``rotator``, ``square``): their slots in turn,
  each picture sliding in over the previous one during ``SLIDE_TIME`` (``sliding``/``rotator``/
  ``square``) or zooming (``diving``);
- ``overlay`` content: pictures scaled into the ``Box`` (stretched when both width and height
  are given, aspect kept otherwise, letterboxed transparent with ``fitAdapter``); ``text``: the
  RGBA image of ``text.render_text`` (supersampled by ``antialias``) overlaid at its box;
- modifiers: ``alpha`` (fade of the node's opacity; a constant opacity), ``blur``/``*blur``
  (``gblur``), ``frame`` (picture shrunk inside a coloured border), ``borderBlur`` (feathered
  alpha edges, approximated by a blurred border), ``colormap`` (negative / black & white);
  animators ``slide-in``/``slide-out``/``slide`` (overlay position over time), ``grow``
  (approximated by nothing: a 2D renderer has no depth), ``custom`` pos keys (linear path).
  Other filters are ignored with a warning.

**Sound**: ``mix.mix_audio`` (the flow's other half) gives the inputs and the graph fragment
of the loudness-normalised mix; a silent movie gets a silent AAC track (every player expects one).

**Encode**: H.264 (``libx264``, preset from the ``x264_preset`` setting, CRF ``CRF``, High
profile, yuv420p, a key frame every ``KEYFRAME_SECONDS``), AAC 48 kHz stereo, constant frame
rate, ``+faststart`` MP4. The preview is the same graph at ``preview_profile`` (height ≤
``PREVIEW_HEIGHT``, ≤ ``PREVIEW_FPS`` fps, ``ultrafast``, no supersampling).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Awaitable, Callable

from PIL import Image as PILImage
from PIL import ImageChops, ImageFilter, ImageOps

from flows.create.profiles import Profile
from flows.create.sxml import Color, Effect, Image, InvalidImageError, Speech, Video
from flows.create.timeline import Clip, Group, Modifier, Plan, TextClip, TransitionClip, VisualClip
from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.tools.ffmpeg import input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe

CRF = 21
"""x264 quality of the export (lower is better)."""
PREVIEW_CRF = 30
PREVIEW_PRESET = "ultrafast"
PREVIEW_HEIGHT = 240
"""Largest frame height of the preview."""
PREVIEW_FPS = Fraction(15)
"""Highest frame rate of the preview."""
KEYFRAME_SECONDS = 2
"""Longest gap between key frames (seeking, streaming)."""
AUDIO_BITRATE = "128k"
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
SLIDE_TIME = 0.6
"""Seconds a picture of a multi-picture effect takes to slide in over the previous one."""
TRANSITIONS = {
    "crossfade": "fade", "circle": "circleopen", "radial": "radial", "waterdrop": "circleopen",
    "swirl": "dissolve", "spiral": "radial", "strip": "hlslice", "scans": "vuslice",
    "custom": "fade",
}
"""SXML transition types -> ffmpeg ``xfade`` transitions (the directional ones are below)."""
DIRECTIONAL = {"move": "slide", "cube": "slide", "dualmove": "slide", "over": "smooth", "under": "wipe",
               "scan": "wipe"}
"""Directional SXML transitions -> the ``xfade`` family taking a direction suffix."""
_DIRECTIONS = {"left": "left", "right": "right", "up": "up", "down": "down", "positive": "left",
               "negative": "right"}
IMAGE_EFFECTS_FILL = frozenset(("none", "kenburns", "panel", "flower", "explode", "slice", "rectangles"))
MOVING_EFFECTS = frozenset(("kenburns", "panel", "flower", "explode", "slice", "rectangles", "diving"))
"""Effects drawn as a Ken Burns move (the exotic single-picture ones are approximated by it)."""
SLIDING_EFFECTS = frozenset(("sliding", "rotator", "square", "diving"))
SLIDE_TRANSITIONS = {"sliding": "slideleft", "diving": "zoomin", "rotator": "squeezeh", "square": "rectcrop"}
"""How a multi-picture effect passes from one picture to the next (``xfade`` types)."""
MAX_PREPARED_SIDE = 8192

Progress = Callable[[float], Awaitable[None]]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Media:
    """What the flow gathered for a plan: the local ``files`` of every URL (pictures, videos,
    sounds, fonts) and ``Speech``, the ffprobe of every video/audio URL, font files by name."""

    files: dict[str | Speech, Path]
    probes: dict[str, MediaProbe] = field(default_factory=dict)
    fonts: dict[str, Path] = field(default_factory=dict)


def preview_profile(profile: Profile) -> Profile:
    """The preview's profile: ``profile`` scaled to at most ``PREVIEW_HEIGHT`` lines (even
    sizes) at no more than ``PREVIEW_FPS``."""
    scale = min(1.0, PREVIEW_HEIGHT / profile.height)
    width = max(2, round(profile.width * scale / 2) * 2)
    height = max(2, round(profile.height * scale / 2) * 2)
    return replace(profile, name=f"{profile.name}-preview", width=width, height=height,
                   fps=min(profile.fps, PREVIEW_FPS))


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def write_y4m(image: PILImage.Image, path: Path, rate: Fraction = Fraction(25)) -> bool:
    """``image`` as a one-frame full-range YUV4MPEG file: 4:2:0 when opaque, 4:4:4 with an
    alpha plane when it has transparency. Returns whether it has alpha."""
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        alpha = image.getchannel("A")
        if alpha.getextrema()[0] == 255:
            alpha = None
    width, height = image.size
    y, cb, cr = image.convert("RGB").convert("YCbCr").split()
    if alpha is None:
        chroma = ((width + 1) // 2, (height + 1) // 2)
        planes = (y, cb.resize(chroma, PILImage.BILINEAR), cr.resize(chroma, PILImage.BILINEAR))
        tag = "C420jpeg"
    else:
        planes, tag = (y, cb, cr, alpha), "C444alpha"
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 {tag}"
                  " XCOLORRANGE=FULL\nFRAME\n".encode())
        for plane in planes:
            out.write(plane.tobytes())
    return alpha is not None


def open_picture(path: Path, clip: VisualClip | None = None) -> PILImage.Image:
    """Decode an image asset (upright, RGB/RGBA); InvalidImageError if it cannot be."""
    from flows.steps.image.probe import open_image

    url = clip.media.filename if clip is not None else path.name
    line = clip.line if clip is not None else None
    try:
        with open_image(path) as img:
            img.draft("RGB", (MAX_PREPARED_SIDE, MAX_PREPARED_SIDE))
            img = ImageOps.exif_transpose(img)
            img.load()
            return img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB")
    except InvalidImageError:
        raise
    except (TaskError, OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise InvalidImageError(f"<image> attribute filename: {url} is not an image that can be decoded ({exc})",
                                line) from None


# --------------------------------------------------------------------------- streams


@dataclass
class _Stream:
    """A labelled stream of the graph: ``frames`` frames from absolute frame ``start`` (its own
    timestamps start at 0, time base 1/fps); ``full`` = frame-sized, else a box at ``x, y``
    (expressions of the parent's ``t`` when animated); ``alpha`` = yuva420p."""

    label: str
    start: int
    frames: int
    full: bool = True
    alpha: bool = False
    x: str = "0"
    y: str = "0"
    w: int = 0
    h: int = 0

    @property
    def end(self) -> int:
        return self.start + self.frames


class _Graph:
    """Builds the filter graph of one render."""

    def __init__(self, plan: Plan, media: Media, profile: Profile, work_dir: Path, antialias: int):
        self.plan, self.media, self.profile = plan, media, profile
        self.width, self.height = profile.width, profile.height
        self.rate = Fraction(profile.fps)
        self.tb = f"{self.rate.denominator}/{self.rate.numerator}"
        self.work_dir = work_dir
        self.antialias = antialias
        self.inputs: list[str] = []
        self.input_count = 0
        self.chains: list[str] = []
        self.warnings: list[str] = []
        self._labels = 0
        self._texts = 0
        self._pictures: dict[tuple, tuple[Path, bool, tuple[int, int]]] = {}
        self._decoded: dict[Path, PILImage.Image] = {}
        self.children: dict[tuple, list[Clip]] = defaultdict(list)
        for record in (*plan.groups, *plan.visuals, *plan.texts):
            if record.path:
                self.children[record.path[:-1]].append(record)
        for kids in self.children.values():
            kids.sort(key=lambda r: r.path)
        self.incoming = {t.after: t for t in plan.transitions}
        self.root = next((g for g in plan.groups if g.path == ()), None)

    # ---- helpers

    def frame(self, seconds: float) -> int:
        return int(math.floor(seconds * self.rate + Fraction(1, 2)))

    def seconds(self, frames: int) -> str:
        return _num(float(frames / self.rate))

    def label(self) -> str:
        self._labels += 1
        return f"[s{self._labels}]"

    def chain(self, source: str, filters: list[str]) -> str:
        out = self.label()
        self.chains.append(f"{source}{','.join(filters) if filters else 'null'}{out}")
        return out

    def add_input(self, args: list[str]) -> int:
        self.inputs += args
        self.input_count += 1
        return self.input_count - 1

    def warn(self, line: int, message: str) -> None:
        text = f"line {line}: {message}"
        if text not in self.warnings:
            self.warnings.append(text)

    def retime(self, frames: int) -> list[str]:
        """Frame-exact length and timestamps 0, 1, 2, … in 1/fps."""
        return [f"trim=end_frame={frames}", f"settb={self.tb}", "setpts=N"]

    def plate(self, start: int, frames: int, color: str = "black@0", alpha: bool = True,
              size: tuple[int, int] | None = None) -> _Stream:
        w, h = size or (self.width, self.height)
        fmt = "yuva420p" if alpha else "yuv420p"
        out = self.label()
        self.chains.append(f"color=c={color}:s={w}x{h}:r={self.rate},{','.join(self.retime(frames))},"
                           f"format={fmt},setsar=1{out}")
        return _Stream(out, start, frames, full=size is None, alpha=alpha, w=w, h=h)

    def as_format(self, stream: _Stream, alpha: bool) -> _Stream:
        if stream.alpha == alpha:
            return stream
        label = self.chain(stream.label, [f"format={'yuva420p' if alpha else 'yuv420p'}"])
        return replace(stream, label=label, alpha=alpha)

    def full(self, stream: _Stream) -> _Stream:
        """A box stream on a transparent frame-sized plate."""
        if stream.full and stream.x == "0" and stream.y == "0":
            return stream
        plate = self.plate(stream.start, stream.frames)
        return self.overlay(plate, stream)

    def overlay(self, base: _Stream, top: _Stream) -> _Stream:
        """``top`` painted over ``base`` from its start frame (clipped to ``base``'s span)."""
        first = max(top.start, base.start)
        last = min(top.end, base.end)
        if last <= first:
            return base
        filters = []
        if top.start < first or top.end > last:
            filters += [f"trim=start_frame={first - top.start}:end_frame={last - top.start}", "setpts=N"]
        offset = first - base.start
        if offset:
            filters.append(f"setpts=PTS+{offset}")
        shifted = self.chain(top.label, filters) if filters else top.label
        x = top.x.replace("{T0}", self.seconds(top.start - base.start))
        y = top.y.replace("{T0}", self.seconds(top.start - base.start))
        out = self.label()
        moving = not (_is_int(x) and _is_int(y))
        self.chains.append(f"{base.label}{shifted}overlay=x='{x}':y='{y}':eof_action=pass"
                           f"{':eval=frame' if moving else ''}{out}")
        return replace(base, label=out)

    def concat(self, streams: list[_Stream]) -> _Stream:
        if len(streams) == 1:
            return streams[0]
        alpha = any(s.alpha for s in streams)
        streams = [self.as_format(s, alpha) for s in streams]
        out = self.label()
        self.chains.append(f"{''.join(s.label for s in streams)}concat=n={len(streams)}:v=1:a=0,"
                           f"settb={self.tb},setpts=N{out}")
        return _Stream(out, streams[0].start, sum(s.frames for s in streams), alpha=alpha)

    def xfade(self, before: _Stream, after: _Stream, kind: str) -> list[_Stream]:
        """``before`` then ``after``, blended by ``xfade`` over their overlap: only the overlap's
        frames go through the transition (``split``/``trim`` around it), as three parts to concat."""
        overlap = before.end - after.start
        if overlap <= 0:
            return [before, after]
        if overlap >= after.frames or overlap > before.frames:
            return [before, self.cut(after, overlap)] if overlap < after.frames else [before]
        alpha = before.alpha or after.alpha
        before, after = self.as_format(before, alpha), self.as_format(after, alpha)
        keep = before.frames - overlap
        parts: list[_Stream] = []
        if keep > 0:
            head, tail = self.label(), self.label()
            self.chains.append(f"{before.label}split{head}{tail}")
            parts.append(replace(before, label=self.chain(head, [f"trim=end_frame={keep}"]), frames=keep))
            outgoing = self.chain(tail, [f"trim=start_frame={keep}", "setpts=N"])
        else:
            outgoing = before.label
        enter, rest = self.label(), self.label()
        self.chains.append(f"{after.label}split{enter}{rest}")
        entering = self.chain(enter, [f"trim=end_frame={overlap}"])
        mixed = self.label()
        self.chains.append(f"{outgoing}{entering}xfade=transition={kind}:duration={self.seconds(overlap)}:offset=0,"
                           f"format={'yuva420p' if alpha else 'yuv420p'},settb={self.tb},setpts=N{mixed}")
        parts.append(_Stream(mixed, after.start, overlap, alpha=alpha))
        remaining = self.chain(rest, [f"trim=start_frame={overlap}", "setpts=N"])
        parts.append(replace(after, label=remaining, start=after.start + overlap, frames=after.frames - overlap))
        return parts

    def cut(self, stream: _Stream, skip: int) -> _Stream:
        if skip <= 0:
            return stream
        label = self.chain(stream.label, [f"trim=start_frame={skip}", "setpts=N"])
        return replace(stream, label=label, start=stream.start + skip, frames=stream.frames - skip)

    def fit_span(self, stream: _Stream, start: int, frames: int, alpha_gaps: bool) -> _Stream:
        """``stream`` padded (plates) or cut to exactly ``[start, start + frames)``."""
        parts = []
        if stream.start > start:
            parts.append(self.plate(start, stream.start - start, *(() if alpha_gaps else ("black", False))))
        elif stream.start < start:
            stream = self.cut(stream, start - stream.start)
        if stream.end > start + frames:
            label = self.chain(stream.label, [f"trim=end_frame={start + frames - stream.start}"])
            stream = replace(stream, label=label, frames=start + frames - stream.start)
        parts.append(stream)
        if stream.end < start + frames:
            parts.append(self.plate(stream.end, start + frames - stream.end, *(() if alpha_gaps else ("black", False))))
        return self.concat(parts)

    # ---- the tree

    def build(self) -> str:
        """The whole graph; returns the label of the final video stream."""
        total = self.frame(self.plan.duration)
        stream = self.render(self.root) if self.root is not None else None
        if stream is None:
            stream = self.plate(0, total, "black", alpha=False)
        stream = self.full(stream)
        if stream.alpha:
            stream = self.overlay(self.plate(stream.start, stream.frames, "black", alpha=False), stream)
        stream = self.fit_span(stream, 0, total, alpha_gaps=False)
        return self.chain(stream.label, ["format=yuv420p", "setsar=1"])

    def span(self, record: Clip) -> tuple[int, int]:
        start = self.frame(record.start)
        return start, self.frame(record.end) - start

    def render(self, record: Clip) -> _Stream | None:
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

    def sequence(self, group: Group, kids: list[Clip], start: int, frames: int,
                 alpha_gaps: bool | None = None) -> _Stream:
        if alpha_gaps is None:
            alpha_gaps = bool(group.path)
        gap = () if alpha_gaps else ("black", False)
        parts: list[_Stream] = []
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
                parts += self.xfade(parts.pop(), stream, _xfade_type(transition))
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
              first: _Stream | None = None) -> _Stream:
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

    def effect(self, group: Group, start: int, frames: int) -> _Stream:
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

    def slides(self, slots: list[VisualClip], kind: str, start: int, frames: int) -> _Stream:
        """A multi-picture effect: its slots in turn, each picture entering over the end of the
        previous one (``xfade`` over ``SLIDE_TIME``; the previous slot is held that much longer,
        so every slot keeps its start)."""
        spans = [self.span(slot) for slot in slots]
        chain: _Stream | None = None
        for index, (slot, (slot_start, slot_frames)) in enumerate(zip(slots, spans)):
            if slot_frames <= 0:
                continue
            following = spans[index + 1][1] if index + 1 < len(spans) else 0
            extra = max(0, min(self.frame(SLIDE_TIME), following - 1))
            stream = self.visual(slot, slot_start, slot_frames + extra)
            stream = self.full(self.modify(slot, stream))
            if chain is None:
                chain = self.fit_span(stream, start, stream.end - start, True) if stream.start > start else stream
            elif chain.end > stream.start:
                chain = self.concat(self.xfade(chain, stream, SLIDE_TRANSITIONS.get(kind, "slideleft")))
            else:
                chain = self.concat([chain, stream])
        if chain is None:
            return self.plate(start, frames)
        return self.fit_span(chain, start, frames, True)

    # ---- leaves

    def picture(self, path: Path, size: tuple[int, int], mode: str, clip: VisualClip) -> tuple[int, bool]:
        """Input index of ``path`` prepared at ``size`` (``fill``: cover-crop; ``fit``: letterbox
        on black; ``box``: stretched; ``contain``: aspect kept, transparent borders)."""
        key = (path, size, mode)
        if key not in self._pictures:
            if path not in self._decoded:
                self._decoded[path] = open_picture(path, clip)
            img = self._decoded[path]
            w, h = size
            if mode == "fill":
                img = ImageOps.fit(img, size, PILImage.BICUBIC)
            elif mode == "fit":
                inner = ImageOps.contain(img, size, PILImage.BICUBIC)
                canvas = PILImage.new("RGB", size, (0, 0, 0))
                canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2),
                             inner if inner.mode == "RGBA" else None)
                img = canvas
            elif mode == "contain":
                inner = ImageOps.contain(img, size, PILImage.BICUBIC)
                canvas = PILImage.new("RGBA", size, (0, 0, 0, 0))
                canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2))
                img = canvas
            else:
                img = img.resize(size, PILImage.BICUBIC)
            img = self.picture_filters(img, clip)
            target = self.work_dir / f"picture-{len(self._pictures):03d}.y4m"
            alpha = write_y4m(img, target, self.rate)
            self._pictures[key] = (target, alpha, size)
        target, alpha, _ = self._pictures[key]
        return self.add_input(input_args(target, "yuv4mpegpipe")), alpha

    def picture_filters(self, img: PILImage.Image, clip: VisualClip) -> PILImage.Image:
        """Filters of an image that are done once on the still (frame, borderBlur, colormap)."""
        for modifier in self.plan.modifiers_of(clip.path):
            node = modifier.node
            if getattr(node, "tag", "") != "filter" or (modifier.start > clip.start + 1e-6 or modifier.end < clip.end - 1e-6):
                continue
            kind = node.type
            if kind == "frame":
                width = float(node.params.get("width", 0.05) or 0.05)
                color = node.params.get("color") or Color(255, 255, 255)
                border = max(1, round(width * min(img.size)))
                inner = img.resize((max(1, img.width - 2 * border), max(1, img.height - 2 * border)), PILImage.BICUBIC)
                framed = PILImage.new(img.mode, img.size, tuple(color)[: len(img.mode)])
                framed.paste(inner, (border, border))
                img = framed
            elif kind == "borderBlur":
                width = float(node.params.get("width", 0.05) or 0.05)
                border = max(1, round(width * min(img.size)))
                mask = PILImage.new("L", img.size, 0)
                mask.paste(255, (border, border, img.width - border, img.height - border))
                mask = mask.filter(ImageFilter.GaussianBlur(border / 2))
                img = img.convert("RGBA")
                img.putalpha(ImageChops.multiply(img.getchannel("A"), mask))
            elif kind == "colormap":
                if node.params.get("preset") == "negative":
                    img = ImageOps.invert(img.convert("RGB"))
                elif node.params.get("preset") is None and node.params.get("rgba-bias-matrix") is None:
                    img = ImageOps.grayscale(img).convert("RGB")
        return img

    def visual(self, clip: VisualClip, start: int, frames: int) -> _Stream | None:
        media = clip.media
        if clip.effect is not None or clip.box is None:
            size, box = (self.width, self.height), None
        else:
            box = self.box_of(clip)
            size = (box[2], box[3])
        fit = self._fits(clip)
        if isinstance(media, Image):
            if media.color is not None:
                color = media.color
                alpha = color.a < 255
                out = self.label()
                self.chains.append(
                    f"color=c=0x{color.hex[1:7]}@{_num(color.a / 255)}:s={size[0]}x{size[1]}:r={self.rate},"
                    f"{','.join(self.retime(frames))},format={'yuva420p' if alpha else 'yuv420p'},setsar=1{out}")
                stream = _Stream(out, start, frames, alpha=alpha)
            elif media.kind == "map" or not media.filename:
                self.warn(clip.line, "<image type=\"map\"> is not rendered: a grey plate instead")
                stream = self.plate(start, frames, "0x808080", alpha=False, size=size)
                stream.full = True
            else:
                path = self.media.files[media.filename]
                mode = "fill" if box is None else "box"
                if fit:
                    mode = "fit" if box is None else "contain"
                elif box is not None and clip.box is not None and (clip.box.width is None or clip.box.height is None):
                    mode = "box"
                index, alpha = self.picture(path, size, mode, clip)
                filters = ["loop=loop=-1:size=1", *self.retime(frames), *_limited(alpha), "setsar=1"]
                filters += self.motion(clip, start, frames, size)
                stream = _Stream(self.chain(f"[{index}:v]", filters), start, frames, alpha=alpha)
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
                if path not in self._decoded:
                    self._decoded[path] = open_picture(path, clip)
                img = self._decoded[path]
                aspect = img.width / img.height
        fx, fy, fw, fh = clip.box.resolve(self.width / self.height, aspect)
        w = max(2, min(4 * self.width, round(fw * self.width)))
        h = max(2, min(4 * self.height, round(fh * self.height)))
        return round(fx * self.width), round(fy * self.height), w, h

    def motion(self, clip: VisualClip, start: int, frames: int, size: tuple[int, int]) -> list[str]:
        """The Ken Burns move of a picture in a moving effect (sub-pixel, floating point)."""
        effect = clip.effect
        if effect is None or effect.type not in MOVING_EFFECTS or (effect.type == "diving" and clip.slots > 1):
            return []
        first = self.frame(clip.effect_start) if clip.slots == 1 else start
        total = (self.frame(clip.effect_end) if clip.slots == 1 else start + frames) - first
        span = max(1, total - 1)
        negative = str(effect.params.get("direction", "") or "").strip() in ("negative", "right", "down")
        drift = KENBURNS_DRIFTS[(clip.slot + sum(clip.path)) % len(KENBURNS_DRIFTS)]
        (cx0, cy0), (cx1, cy1) = drift
        z0, z1 = 1.0, KENBURNS_ZOOM
        if negative:
            z0, z1, cx0, cy0, cx1, cy1 = z1, z0, cx1, cy1, cx0, cy0
        w, h = size
        p = f"clip((in-1+{start - first})/{span},0,1)"  # perspective's `in` counts from 1
        z = f"({_num(z0)}+{_num(z1 - z0)}*{p})"
        hw, hh = f"({w}/(2*{z}))", f"({h}/(2*{z}))"
        xc = f"clip({w}*({_num(cx0)}+{_num(cx1 - cx0)}*{p}),{hw},{w}-{hw})"
        yc = f"clip({h}*({_num(cy0)}+{_num(cy1 - cy0)}*{p}),{hh},{h}-{hh})"
        x0, x1 = f"({xc}-{hw})", f"({xc}+{hw})"
        y0, y1 = f"({yc}-{hh})", f"({yc}+{hh})"
        return [f"perspective=x0='{x0}':y0='{y0}':x1='{x1}':y1='{y0}':x2='{x0}':y2='{y1}':x3='{x1}':y3='{y1}'"
                f":interpolation=linear:sense=source:eval=frame"]

    def video(self, clip: VisualClip, media: Video, start: int, frames: int, size: tuple[int, int],
              fit: bool) -> _Stream:
        path = self.media.files[media.filename]
        probe = self.media.probes.get(media.filename)
        index = self.add_input(input_args(path, probe.format_name if probe else None, seek=media.skip or None))
        alpha = bool(probe and probe.video and probe.video.alpha)
        w, h = size
        filters = ["setpts=PTS-STARTPTS"]
        if media.speed != 1.0:
            filters.append(f"setpts=PTS/{_num(media.speed)}")
        filters.append(f"fps={self.rate}")
        if clip.length is not None:
            filters.append(f"trim=end_frame={max(1, self.frame(clip.length))}")
        if clip.box is not None and clip.effect is None and not fit:
            filters.append(f"scale={w}:{h}")
        elif fit:
            filters += [f"scale={w}:{h}:force_original_aspect_ratio=decrease",
                        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color={'black@0' if clip.box is not None else 'black'}"]
            alpha = alpha or clip.box is not None
        else:
            filters += [f"scale={w}:{h}:force_original_aspect_ratio=increase", f"crop={w}:{h}"]
        fmt = "yuva420p" if alpha else "yuv420p"
        filters += [f"format={fmt}", "setsar=1", "tpad=stop=-1:stop_mode=clone", *self.retime(frames)]
        filters += self.motion(clip, start, frames, size)
        return _Stream(self.chain(f"[{index}:v]", filters), start, frames, alpha=alpha)

    def text(self, clip: TextClip, start: int, frames: int) -> _Stream | None:
        from flows.create.text import render_text

        drawn = render_text(clip, (self.width, self.height), self.antialias, self.media.fonts)
        image = drawn.image
        if image.getbbox() is None:
            return None
        self._texts += 1
        target = self.work_dir / f"text-{self._texts:04d}.y4m"
        alpha = write_y4m(image, target, self.rate)
        index = self.add_input(input_args(target, "yuv4mpegpipe"))
        filters = ["loop=loop=-1:size=1", *self.retime(frames), *_limited(alpha), "setsar=1"]
        return _Stream(self.chain(f"[{index}:v]", filters), start, frames, full=False, alpha=alpha,
                       x=str(drawn.x), y=str(drawn.y), w=image.width, h=image.height)

    # ---- modifiers

    def modify(self, record: Clip, stream: _Stream) -> _Stream:
        for modifier in self.plan.modifiers_of(record.path):
            node = modifier.node
            kind = node.type
            if node.tag == "filter":
                if kind in ("frame", "borderBlur", "colormap", "fitAdapter") and isinstance(record, VisualClip):
                    continue  # done on the still (or in the fit)
                stream = self.filter(modifier, stream)
            else:
                stream = self.animate(modifier, stream)
        return stream

    def _window(self, modifier: Modifier, stream: _Stream) -> tuple[str, str, str]:
        """(start, end, duration) of ``modifier`` in the stream's own seconds."""
        a = max(0, self.frame(modifier.start) - stream.start)
        b = min(stream.frames, self.frame(modifier.end) - stream.start)
        return self.seconds(a), self.seconds(b), self.seconds(max(0, b - a))

    def filter(self, modifier: Modifier, stream: _Stream) -> _Stream:
        node = modifier.node
        kind = node.type
        start, end, duration = self._window(modifier, stream)
        enable = f"between(t,{start},{end})"
        if kind == "alpha":
            a0 = float(node.params.get("alphaStart", 1.0) if node.params.get("alphaStart") is not None else 1.0)
            a1 = float(node.params.get("alphaEnd", a0) if node.params.get("alphaEnd") is not None else a0)
            stream = self.as_format(stream, True)
            if abs(a0 - a1) < 1e-6:
                if a0 >= 1:
                    return stream
                label = self.chain(stream.label, [f"colorchannelmixer=aa={_num(a0)}:enable='{enable}'"])
            else:
                way = "in" if a1 > a0 else "out"
                label = self.chain(stream.label, [f"fade=t={way}:st={start}:d={duration}:alpha=1"])
            return replace(stream, label=label)
        if kind in ("blur", "hblur", "vblur", "gaussianBlur", "hgaussianBlur", "vgaussianBlur", "directionalBlur",
                    "maskedBlur", "bilateralBlur"):
            diameter = float(node.params.get("diameter") or node.params.get("diameterX") or 5.0)
            sigma = max(0.5, diameter / 2 * self.height / 360)
            label = self.chain(stream.label, [f"gblur=sigma={_num(sigma)}:enable='{enable}'"])
            return replace(stream, label=label)
        if kind == "colormap" and node.params.get("preset") == "negative":
            return replace(stream, label=self.chain(stream.label, [f"negate:enable='{enable}'"]))
        if kind == "colormap":
            return replace(stream, label=self.chain(stream.label, [f"hue=s=0:enable='{enable}'"]))
        if kind in ("frame", "fitAdapter", "distancemap", "distancecolor"):
            return stream
        self.warn(node.line, f"<filter type=\"{kind}\"> is not rendered: ignored")
        return stream

    def animate(self, modifier: Modifier, stream: _Stream) -> _Stream:
        node = modifier.node
        kind = node.type
        if kind not in ("slide-in", "slide-out", "slide", "custom"):
            if kind != "grow":
                self.warn(node.line, f"<animator type=\"{kind}\"> is not rendered: ignored")
            return stream
        if stream.full:
            stream = replace(stream, full=False, w=self.width, h=self.height)
        a = max(0, self.frame(modifier.start) - stream.start)
        b = min(stream.frames, self.frame(modifier.end) - stream.start)
        if b <= a:
            return stream
        t0 = f"(t-{{T0}}-{self.seconds(a)})"
        d = self.seconds(b - a)
        p = f"clip({t0}/{d},0,1)"
        direction = str(node.params.get("direction", "left") or "left").strip()
        x, y = stream.x, stream.y
        W, H = self.width, self.height
        if kind == "custom":
            keys = [k for k in node.keys if k.params.get("pos") is not None]
            if len(keys) < 1:
                return stream
            dx = self._keyed(keys, 0, W / 2 / (W / H), a)
            dy = self._keyed(keys, 1, -H / 2, a)
            return replace(stream, x=f"({x})+{dx}", y=f"({y})+{dy}")
        # off-screen offsets towards the named edge
        far = {"left": (f"-(({x})+{stream.w})", "0"), "right": (f"({W}-({x}))", "0"),
               "up": ("0", f"-(({y})+{stream.h})"), "down": ("0", f"({H}-({y}))")}.get(direction)
        if far is None:
            return stream
        ox, oy = far
        if kind == "slide-in":
            k = f"(1-{p})"
        elif kind == "slide-out":
            k = p
        else:  # slow drift: a tenth of the frame over the span
            ox = {"left": f"-{W * 0.1}", "right": f"{W * 0.1}"}.get(direction, "0")
            oy = {"up": f"-{H * 0.1}", "down": f"{H * 0.1}"}.get(direction, "0")
            k = p
        return replace(stream, x=f"({x})+({ox})*{k}", y=f"({y})+({oy})*{k}")

    def _keyed(self, keys, axis: int, unit: float, offset_frames: int) -> str:
        """A piecewise-linear expression of ``t`` through the keys' ``pos`` on ``axis``."""
        t = f"(t-{{T0}}-{self.seconds(offset_frames)})"
        points = [(k.time, k.params.get("pos")[axis] * unit) for k in keys]
        expr = _num(points[-1][1])
        for (ta, va), (tb, vb) in reversed(list(zip(points, points[1:]))):
            if tb <= ta:
                continue
            segment = f"({_num(va)}+({_num(vb - va)})*({t}-{_num(ta)})/{_num(tb - ta)})"
            expr = f"if(lt({t},{_num(tb)}),{segment},{expr})"
        return f"if(lt({t},{_num(points[0][0])}),{_num(points[0][1])},{expr})"


def _limited(alpha: bool) -> list[str]:
    """A prepared (full-range) picture converted to the limited-range 4:2:0 of the movie."""
    return ["scale=in_range=pc:out_range=tv", f"format={'yuva420p' if alpha else 'yuv420p'}"]


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _xfade_type(clip: TransitionClip) -> str:
    node = clip.transition
    kind = node.type
    if kind in DIRECTIONAL:
        direction = str(node.params.get("direction", "") or "").strip()
        return DIRECTIONAL[kind] + _DIRECTIONS.get(direction, "left")
    return TRANSITIONS.get(kind, "fade")


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Command:
    """An ffmpeg render: its arguments, the output and the graph's warnings."""

    args: list[str]
    output: Path
    duration: float
    warnings: tuple[str, ...] = ()


def build(plan: Plan, media: Media, profile: Profile, dest: Path, work_dir: Path, *, antialias: int = 4,
          preset: str | None = None, crf: int = CRF, audio: bool = True) -> Command:
    """The ffmpeg command that renders ``plan`` at ``profile`` into ``dest`` (an MP4).
    Pictures and texts are prepared (Pillow) into ``work_dir`` here; call it off the event loop."""
    from flows.create.mix import mix_audio

    work_dir.mkdir(parents=True, exist_ok=True)
    graph = _Graph(plan, media, profile, work_dir, antialias)
    video = graph.build()
    mixed = mix_audio(plan, media.files, media.probes, graph.input_count) if audio else None
    chains = list(graph.chains)
    inputs = list(graph.inputs)
    if mixed is not None:
        extra, fragment, sound = mixed
        inputs += extra
        chains.append(fragment)
    else:
        samples = round(plan.duration * 48_000)
        sound = "[silence]"
        chains.append(f"anullsrc=r=48000:cl=stereo,atrim=end_sample={samples}{sound}")
    script = work_dir / f"graph-{dest.stem}.txt"
    script.write_text(";\n".join(chains), encoding="utf-8")
    rate = Fraction(profile.fps)
    gop = max(1, round(rate * KEYFRAME_SECONDS))
    encode = ["-map", video, "-map", sound,
              "-c:v", "libx264", "-preset", preset or get_settings().x264_preset, "-crf", str(crf),
              "-profile:v", "high", "-pix_fmt", "yuv420p", "-color_range", "tv", "-colorspace", "smpte170m", "-r", str(rate), "-fps_mode", "cfr",
              "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
              "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", "48000", "-ac", "2",
              "-t", _num(float(graph.frame(plan.duration) / rate)),
              "-movflags", "+faststart", "-f", "mp4", str(dest)]
    args = [*inputs, "-filter_complex_script", str(script), *encode]
    return Command(args, dest, plan.duration, tuple(graph.warnings))


async def run(command: Command, progress: Progress | None = None) -> Path:
    """Run a built command (timeout from the settings, ``progress(percent)`` as it renders)."""
    command.output.parent.mkdir(parents=True, exist_ok=True)
    await run_ffmpeg(command.args, duration=command.duration, progress=progress)
    return command.output


async def render_movie(plan: Plan, media: Media, profile: Profile, dest: Path, work_dir: Path, *,
                       antialias: int = 4, preset: str | None = None, crf: int = CRF,
                       progress: Progress | None = None) -> Command:
    """Build (in a thread: Pillow) and run the render of ``plan`` into ``dest``."""
    import asyncio

    command = await asyncio.to_thread(build, plan, media, profile, dest, work_dir, antialias=antialias,
                                      preset=preset, crf=crf)
    await run(command, progress)
    return command


async def extract_frame(movie: Path, time: float, duration: float, dest: Path, fps: Fraction) -> Path:
    """The frame of ``movie`` shown at ``time`` (clamped into the movie) as a JPEG."""
    last = max(0.0, duration - float(1 / fps))
    at = min(max(0.0, time), last)
    dest.parent.mkdir(parents=True, exist_ok=True)
    await run_ffmpeg([*input_args(movie, "mov", seek=at or None), "-frames:v", "1", "-q:v", "3",
                      "-update", "1", "-f", "image2", str(dest)])
    return dest

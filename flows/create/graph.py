"""The building blocks of a render's ffmpeg filter graph: labelled streams counted in frames.

A ``Stream`` is a labelled stream of the graph lasting ``frames`` frames from absolute frame
``start``; its own timestamps start at 0 in the time base ``1/fps``, so streams join and
overlap to the frame. ``FilterGraph`` holds the ffmpeg inputs and the filter chains written so
far and the operations every part of the renderer shares: plates (solid or transparent
frames), format changes, painting one stream over another at its start frame (``overlay``),
joining streams end to end (``concat``), cutting and padding a stream to a span. It knows
nothing of the plan; ``scene.Scene`` walks the plan with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from flows.create.profiles import Profile


def num(value: float) -> str:
    """A number as ffmpeg expressions take it (no exponent, no trailing zeros)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def frame_at(seconds: float, rate: Fraction) -> int:
    """The frame shown at ``seconds`` at ``rate`` frames per second (rounded to the nearest)."""
    return int(math.floor(seconds * rate + Fraction(1, 2)))


def is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


@dataclass
class Stream:
    """A labelled stream of the graph: ``frames`` frames from absolute frame ``start`` (its own
    timestamps start at 0, time base 1/fps); ``full`` = frame-sized, else a ``w``×``h`` box at
    ``x, y`` (expressions of the parent's ``t`` when animated, ``{T0}`` standing for the
    stream's start in the parent); ``alpha`` = yuva420p."""

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


class FilterGraph:
    """The inputs and filter chains of one render at ``profile``'s size and rate."""

    def __init__(self, profile: Profile):
        self.width, self.height = profile.width, profile.height
        self.rate = Fraction(profile.fps)
        self.tb = f"{self.rate.denominator}/{self.rate.numerator}"
        self.inputs: list[str] = []
        self.input_count = 0
        self.chains: list[str] = []
        self.warnings: list[str] = []
        self._labels = 0

    # ---- time, labels, inputs

    def frame(self, seconds: float) -> int:
        """The frame shown at the movie time ``seconds`` (rounded to the nearest)."""
        return frame_at(seconds, self.rate)

    def seconds(self, frames: int) -> str:
        return num(float(frames / self.rate))

    def label(self) -> str:
        self._labels += 1
        return f"[s{self._labels}]"

    def chain(self, source: str, filters: list[str]) -> str:
        """``source`` through ``filters``; returns the new label."""
        out = self.label()
        self.chains.append(f"{source}{','.join(filters) if filters else 'null'}{out}")
        return out

    def add_input(self, args: list[str]) -> int:
        """Append an input's ffmpeg options (ending with ``-i``); returns its index."""
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

    # ---- streams

    def plate(self, start: int, frames: int, color: str = "black@0", alpha: bool = True,
              size: tuple[int, int] | None = None) -> Stream:
        """A plate of a neutral ``color`` (black, grey, transparent: the same in every YUV matrix)."""
        w, h = size or (self.width, self.height)
        fmt = "yuva420p" if alpha else "yuv420p"
        out = self.label()
        self.chains.append(f"color=c={color}:s={w}x{h}:r={self.rate},{','.join(self.retime(frames))},"
                           f"format={fmt},setsar=1{out}")
        return Stream(out, start, frames, full=size is None, alpha=alpha, w=w, h=h)

    def as_format(self, stream: Stream, alpha: bool) -> Stream:
        if stream.alpha == alpha:
            return stream
        label = self.chain(stream.label, [f"format={'yuva420p' if alpha else 'yuv420p'}"])
        return replace(stream, label=label, alpha=alpha)

    def full(self, stream: Stream) -> Stream:
        """A box stream on a transparent frame-sized plate."""
        if stream.full and stream.x == "0" and stream.y == "0":
            return stream
        plate = self.plate(stream.start, stream.frames)
        return self.overlay(plate, stream)

    def overlay(self, base: Stream, top: Stream) -> Stream:
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
        moving = not (is_int(x) and is_int(y))
        self.chains.append(f"{base.label}{shifted}overlay=x='{x}':y='{y}':eof_action=pass"
                           f"{':eval=frame' if moving else ''}{out}")
        return replace(base, label=out)

    def concat(self, streams: list[Stream]) -> Stream:
        """``streams`` end to end (one starts where the previous ends)."""
        if len(streams) == 1:
            return streams[0]
        alpha = any(s.alpha for s in streams)
        streams = [self.as_format(s, alpha) for s in streams]
        out = self.label()
        self.chains.append(f"{''.join(s.label for s in streams)}concat=n={len(streams)}:v=1:a=0,"
                           f"settb={self.tb},setpts=N{out}")
        return Stream(out, streams[0].start, sum(s.frames for s in streams), alpha=alpha)

    def cut(self, stream: Stream, skip: int) -> Stream:
        """``stream`` without its first ``skip`` frames."""
        if skip <= 0:
            return stream
        label = self.chain(stream.label, [f"trim=start_frame={skip}", "setpts=N"])
        return replace(stream, label=label, start=stream.start + skip, frames=stream.frames - skip)

    def fit_span(self, stream: Stream, start: int, frames: int, alpha_gaps: bool) -> Stream:
        """``stream`` padded (plates: transparent, or black with ``alpha_gaps`` False) or cut to
        exactly ``[start, start + frames)``."""
        gap = () if alpha_gaps else ("black", False)
        parts = []
        if stream.start > start:
            parts.append(self.plate(start, stream.start - start, *gap))
        elif stream.start < start:
            stream = self.cut(stream, start - stream.start)
        if stream.end > start + frames:
            label = self.chain(stream.label, [f"trim=end_frame={start + frames - stream.start}"])
            stream = replace(stream, label=label, frames=start + frames - stream.start)
        parts.append(stream)
        if stream.end < start + frames:
            parts.append(self.plate(stream.end, start + frames - stream.end, *gap))
        return self.concat(parts)

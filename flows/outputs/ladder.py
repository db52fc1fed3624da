"""The built-in HLS/DASH ladder and the choice of rungs for one input (never upscale).

Built-in rungs: ``BUILTIN_LADDER`` (H.264 high profile, AAC-LC stereo audio shared by all
rungs; bitrates in kbps for up to 30 fps — rungs of an input over 30 fps get 1.5× the video
bitrate; docs/vimqu.md shows the table, generated from it).

A rung's height is the short side of the frame: a portrait input gets rungs of that width.
The long side follows the input's aspect ratio, rounded to an even number. A rung whose short
side is above the input's is dropped (reported in ``LadderPlan.dropped``); when every asked
rung is above the input, the lowest one is kept at the input's own size (its bitrate scaled
down by the pixel ratio) and reported as ``capped``. Inputs over 60 fps are encoded at half
their rate. The audio of every rung is one rendition per distinct audio bitrate of the kept
rungs (the built-in ladder: one, at the highest kept rung's rate, unless the output config
sets ``audio_bitrate``).

This module imports nothing of ours: the API validates variant names with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HIGH_FPS_FACTOR = 1.5
"""Video bitrate factor of rungs of an input over 30 fps."""
MAX_FPS = 60.0
DEFAULT_AUDIO_BITRATE = 128
"""Audio kbps of explicit rungs that give none (and no output-wide ``audio_bitrate``)."""


@dataclass(frozen=True)
class Variant:
    """One asked rung: a built-in name or an explicit height and bitrates (kbps)."""

    name: str
    height: int
    video_bitrate: int
    audio_bitrate: int | None = None
    width: int | None = None


BUILTIN_LADDER: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("240p", 240, 400, 64),
        Variant("360p", 360, 800, 96),
        Variant("480p", 480, 1400, 128),
        Variant("720p", 720, 2800, 128),
        Variant("1080p", 1080, 5000, 128),
        Variant("1440p", 1440, 8000, 128),
        Variant("2160p", 2160, 14000, 128),
    )
}
DEFAULT_VARIANTS = ("360p", "720p", "1080p")


@dataclass(frozen=True)
class Rung:
    """A rung to encode: its name, frame size, rate and bitrates (kbps)."""

    name: str
    width: int
    height: int
    fps: float
    video_bitrate: int
    audio_bitrate: int

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


@dataclass(frozen=True)
class DroppedRung:
    name: str
    height: int
    reason: str


@dataclass(frozen=True)
class LadderPlan:
    """The rungs to encode (lowest first), the asked ones left out and why."""

    rungs: list[Rung]
    dropped: list[DroppedRung] = field(default_factory=list)
    capped: str | None = None
    """Name of the rung kept at the input's size because every asked rung was above it."""
    source_size: tuple[int, int] = (0, 0)
    fps: float = 0.0
    """The rungs' frame rate (the input's, halved while over 60)."""

    @property
    def audio_bitrates(self) -> list[int]:
        """The distinct audio bitrates of the rungs (one audio rendition each), ascending."""
        return sorted({r.audio_bitrate for r in self.rungs})


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def rung_size(source: tuple[int, int], short_side: int, width: int | None = None) -> tuple[int, int]:
    """(width, height) of a rung whose short side is ``short_side`` for an upright
    ``source`` size; the long side keeps the source's aspect (even), unless ``width``
    (landscape) pins it."""
    sw, sh = source
    if sw >= sh:
        return (_even(width) if width else _even(short_side * sw / sh)), _even(short_side)
    return _even(short_side), (_even(width) if width else _even(short_side * sh / sw))


def output_fps(source_fps: float) -> float:
    """The rungs' frame rate: the input's, halved while over ``MAX_FPS`` (30 when unknown)."""
    fps = source_fps if source_fps > 0 else 30.0
    while fps > MAX_FPS:
        fps /= 2
    return round(fps, 3)


def plan_ladder(
    variants: list[Variant], source: tuple[int, int], source_fps: float, *, audio_bitrate: int | None = None
) -> LadderPlan:
    """The rungs of ``variants`` for an input of upright size ``source`` at ``source_fps``
    (see the module's rules); ``audio_bitrate`` (kbps) overrides every rung's audio."""
    if source[0] < 2 or source[1] < 2:
        raise ValueError("the input has no frame size")
    fps = output_fps(source_fps)
    factor = HIGH_FPS_FACTOR if fps > 30.5 else 1.0
    limit = min(source)
    ordered = sorted(variants, key=lambda v: v.height)
    kept = [v for v in ordered if v.height <= limit]
    dropped = [DroppedRung(v.name, v.height, f"{v.name} ({v.height} px) is above the input's {limit} px:"
                                             " rungs are never upscaled") for v in ordered if v.height > limit]
    capped = None
    if not kept and ordered:
        low, short = ordered[0], limit - limit % 2
        kept = [Variant(f"{short}p", short, int(low.video_bitrate * (short / low.height) ** 2),
                        low.audio_bitrate)]
        capped = low.name
    builtin = all(v.name in BUILTIN_LADDER for v in ordered)
    shared_audio = audio_bitrate or (max((v.audio_bitrate or 0) for v in kept) if builtin and kept else None)
    rungs = []
    for v in kept:
        w, h = rung_size(source, v.height, v.width)
        rungs.append(Rung(v.name, w, h, fps, max(50, int(round(v.video_bitrate * factor))),
                          shared_audio or v.audio_bitrate or DEFAULT_AUDIO_BITRATE))
    return LadderPlan(rungs, dropped, capped, source, fps)

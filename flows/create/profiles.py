"""Output profiles (spec §12): a profile name -> frame size, frame rate and the original
container/codecs and bitrates (for reference: every profile renders as H.264/AAC MP4 here).

``profile(name)`` never fails. A name is a *base* (``360p``, ``720p``, ``iphone``, ``dvd-pal-16-9``,
…) optionally followed by a frame-rate suffix (``-24-fps``, ``-29-97-fps``, ``-12-5fps``,
``-12fp``, …) that overrides the base's rate: ``360p-24-fps`` is 640×360 at 24 fps. A name
whose base is unknown falls back to **640×360 at 25 fps** (the spec's fallback, also the
default profile ``360p``), with ``known=False`` so the caller can log it. Sizes of the
undocumented v2 names are inferred from their names (spec §12 [inf]) and rounded to even
numbers (H.264 with 4:2:0 needs them).

``antialias`` (1, 2 or 4; default 4) is the supersampling factor of text and shapes: they
are drawn at ``Profile.supersampled(antialias)`` and scaled down to the frame, so their
edges are smooth; media and the frame itself are rendered at the profile size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_PROFILE = "360p"
ANTIALIAS_FACTORS = (1, 2, 4)
DEFAULT_ANTIALIAS = 4

NTSC = Fraction(30000, 1001)


@dataclass(frozen=True)
class Profile:
    """An output profile: ``width``×``height`` pixels at ``fps`` frames per second."""

    name: str
    width: int
    height: int
    fps: Fraction
    container: str = "mp4"
    video_codec: str = "h264"
    audio_codec: str = "aac"
    video_bitrate: str | None = None
    audio_bitrate: str | None = None
    known: bool = True

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def rate(self) -> str:
        """The frame rate as ffmpeg writes it (``25``, ``30000/1001``)."""
        return str(self.fps)

    def supersampled(self, antialias: int = DEFAULT_ANTIALIAS) -> tuple[int, int]:
        """Size at which text and shapes are drawn before being scaled to the frame."""
        if antialias not in ANTIALIAS_FACTORS:
            raise ValueError(f"antialias must be one of {ANTIALIAS_FACTORS}, not {antialias!r}")
        return self.width * antialias, self.height * antialias


# base name -> (width, height, fps, container, video codec, audio codec, video/audio bitrates)
_MP4 = ("mp4", "h264", "aac")
_FLV = ("flv", "flv", "mp3")
_MPEG4 = ("mp4", "mpeg4", "aac")
_WMV = ("asf", "wmv2", "wmav2")
_MPEG2 = ("mpeg", "mpeg2video", "mp2")
_MPEG1 = ("mpeg", "mpeg1video", "mp2")
_BASES: dict[str, tuple] = {
    # documented table [doc]
    "iphone": (480, 320, 25, *_MP4),
    "youtube": (640, 360, 25, *_MP4, "1024k", "128k"),
    "quicktime": (640, 480, 25, *_MP4),
    "quicktime-small": (320, 240, 25, *_MP4),
    "flash-small": (320, 240, 25, *_FLV),
    "iphone-flv": (480, 320, 25, *_FLV),
    "youtube-flv": (640, 360, 25, *_FLV),
    "flash": (640, 480, 25, *_FLV),
    "flash-hq": (640, 480, 25, *_FLV),
    "mobile-small": (176, 144, 15, *_MPEG4),
    "mobile": (320, 240, 25, *_MPEG4),
    "wmv1": (640, 480, 25, *_WMV),
    "wmv2": (640, 480, 25, *_WMV),
    "dvd-ntsc-4-3": (720, 480, NTSC, *_MPEG2),
    "dvd-ntsc-16-9": (720, 480, NTSC, *_MPEG2),
    "dvd-ntsc-4-3-h": (352, 240, NTSC, *_MPEG2),
    "dvd-ntsc-16-9-h": (352, 240, NTSC, *_MPEG2),
    "dvd-pal-4-3": (720, 576, 25, *_MPEG2),
    "dvd-pal-16-9": (720, 576, 25, *_MPEG2),
    "dvd-pal-4-3-h": (352, 288, 25, *_MPEG2),
    "dvd-pal-16-9-h": (352, 288, 25, *_MPEG2),
    "720p": (1280, 720, 25, *_MP4, "1500k", "256k"),
    # v2 names, sizes inferred from the name [inf]
    "240p": (426, 240, 25, *_MP4),
    "360p": (640, 360, 25, *_MP4),
    "480p": (854, 480, 25, *_MP4),
    "480p-4-3": (640, 480, 25, *_MP4),
    "720p-hq": (1280, 720, 25, *_MP4, "3000k", "256k"),
    "720p-vhq": (1280, 720, 25, *_MP4, "5000k", "256k"),
    "th720p": (1280, 720, 25, *_MP4),
    "1080p": (1920, 1080, 25, *_MP4),
    "square-400": (400, 400, 25, *_MP4),
    "square-640": (640, 640, 25, *_MP4),
    "iphone-16-9": (480, 270, 25, *_MP4),
    "iphone-16-9-slow": (480, 270, 25, *_MP4),
    "iphone-slow": (480, 320, 25, *_MP4),
    "iphone-sslow": (480, 320, 25, *_MP4),
    "youtube-slow": (640, 360, 25, *_MP4),
    "youtube-slow-flv": (640, 360, 25, *_FLV),
    "flash-h264": (640, 480, 25, *_MP4),
    "flash-large-4-3": (800, 600, 25, *_FLV),
    "flash-med-16-9": (640, 360, 25, *_FLV),
    "wmv2-large-4-3": (800, 600, 25, *_WMV),
    "ntsc-wide": (720, 480, NTSC, *_MPEG2),
    "ntsc-wide-wmv": (720, 480, NTSC, *_WMV),
    "dvd-mpeg1": (352, 288, 25, *_MPEG1),
    "dvd-mpeg1-small": (176, 144, 25, *_MPEG1),
    "cine-half-hd": (960, 540, 24, *_MP4),
    "special": (640, 360, 25, *_MP4),
}

_FPS_SUFFIXES = (
    re.compile(r"-(?P<rate>\d+-\d+)(?:-fps|fps|fp|p)\Z"),  # -29-97-fps, -12-5fps
    re.compile(r"-(?P<rate>\d+)(?:-fps|fps|fp|p)\Z"),  # -24-fps, -5fps, -12fp, -24p
)
_RATES = {"11-988": Fraction(12000, 1001), "23-976": Fraction(24000, 1001), "23-98": Fraction(24000, 1001),
          "29-97": NTSC, "12-5": Fraction(25, 2)}

V1_PROFILES = (
    "iphone-24p", "dvd-pal-16-9", "360p", "360p-23-976-fps", "480p-4-3-29-97-fps", "dvd-ntsc-4-3-h",
    "dvd-pal-4-3-h", "360p-24-fps", "360p-12-5-fps", "1080p-24-fps", "youtube-12-5fps", "dvd-pal-4-3",
    "480p-24-fps", "iphone-slow", "ntsc-wide-wmv", "special", "360p-11-988-fps", "dvd-mpeg1-small",
    "youtube-flv", "720p-12-fps", "dvd-pal-16-9-h", "youtube-slow", "720p-12-5-fps", "wmv2", "flash",
    "flash-hq", "mobile-small", "youtube-5fps", "flash-large-4-3", "iphone", "720p-24-fps", "iphone-flv",
    "iphone-16-9-12fp", "1080p", "wmv1", "240p-24-fps", "iphone-16-9", "quicktime", "720p-23-98-fps",
    "th720p", "360p-29-97-fps", "youtube-slow-flv", "wmv2-large-4-3", "dvd-mpeg1", "ntsc-wide",
    "flash-small", "dvd-ntsc-16-9", "480p", "dvd-ntsc-4-3", "mobile", "iphone-sslow", "720p", "youtube",
    "720p-hq", "square-400", "dvd-ntsc-16-9-h", "iphone-16-9-slow", "cine-half-hd", "flash-h264", "240p",
    "quicktime-small", "720p-29-97-fps", "360p-12-fps", "flash-med-16-9",
)
"""The ``profile`` choices of video.create in the v1 reference (seeds 001/002)."""


def _rate(text: str) -> Fraction:
    return _RATES.get(text) or Fraction(text.replace("-", "."))


def profile(name: str | None = None) -> Profile:
    """The profile called ``name`` (default ``360p``); unknown names fall back to 640×360@25."""
    name = (name or DEFAULT_PROFILE).strip().lower()
    spec, fps = _BASES.get(name), None
    for suffix in _FPS_SUFFIXES:
        if spec is None and (match := suffix.search(name)) and name[: match.start()] in _BASES:
            spec, fps = _BASES[name[: match.start()]], _rate(match["rate"])
    if spec is None:
        return Profile(name, 640, 360, Fraction(25), known=False)
    width, height, base_fps, container, vcodec, acodec, *bitrates = spec
    video_bitrate, audio_bitrate = (*bitrates, None, None)[:2]
    return Profile(name, width, height, fps or Fraction(base_fps), container, vcodec, acodec, video_bitrate, audio_bitrate)

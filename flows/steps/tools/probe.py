"""ffprobe: what a media file holds (``MediaProbe``, typed), and its content type."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import FORMAT_WHITELIST, INPUT_PROTOCOLS
from flows.steps.tools.process import run_tool

ALPHA_PIX_FMTS = ("yuva", "rgba", "argb", "bgra", "abgr", "gbrap", "ya")


@dataclass(frozen=True)
class VideoStream:
    codec: str
    width: int
    height: int
    frame_rate: float
    rotation: float
    alpha: bool
    pix_fmt: str | None
    duration: float | None = None
    """The stream's own duration in seconds, when the container gives it."""
    bit_rate: int | None = None

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as shown, after ``rotation`` (ffmpeg applies it when decoding)."""
        turned = round(self.rotation) % 180 == 90
        return (self.height, self.width) if turned else (self.width, self.height)


@dataclass(frozen=True)
class AudioStream:
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None


@dataclass(frozen=True)
class MediaProbe:
    """What ffprobe says about a media file, typed."""

    format_name: str
    duration: float
    size: int
    bit_rate: int | None
    video: VideoStream | None
    audio: AudioStream | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    def summary(self) -> str:
        """One line for a log: container, duration and streams."""
        parts = [f"{self.format_name.split(',')[0]} {self.duration:.2f} s"]
        if self.video:
            v = self.video
            rotated = f" rotated {v.rotation:g}" if v.rotation else ""
            parts.append(f"{v.codec} {v.width}x{v.height} {v.frame_rate:g} fps{rotated}")
        if self.audio:
            parts.append(f"{self.audio.codec} {self.audio.sample_rate} Hz {self.audio.channels} ch")
        return ", ".join(parts)


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value)


def _rotation(stream: dict[str, Any]) -> float:
    """Counter-clockwise degrees to apply to see the video as shot (display matrix / rotate tag)."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return float(-float(side["rotation"]) % 360)
    tag = (stream.get("tags") or {}).get("rotate")
    return float(-float(tag) % 360) if tag else 0.0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_probe(data: dict[str, Any]) -> MediaProbe:
    """A MediaProbe from ffprobe's JSON (``-show_format -show_streams``)."""
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    video = audio = None
    for s in streams:
        if s.get("codec_type") == "video" and video is None and not (s.get("disposition") or {}).get("attached_pic"):
            pix = s.get("pix_fmt")
            video = VideoStream(
                codec=s.get("codec_name", ""),
                width=int(s.get("width") or 0),
                height=int(s.get("height") or 0),
                frame_rate=round(_rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate")), 3),
                rotation=_rotation(s),
                alpha=bool(pix and pix.startswith(ALPHA_PIX_FMTS))
                or (s.get("tags") or {}).get("alpha_mode") == "1",  # VP8/VP9 alpha in WebM
                pix_fmt=pix,
                duration=_float(s.get("duration")),
                bit_rate=_int(s.get("bit_rate")),
            )
        elif s.get("codec_type") == "audio" and audio is None:
            audio = AudioStream(
                codec=s.get("codec_name", ""),
                sample_rate=int(s.get("sample_rate") or 0),
                channels=int(s.get("channels") or 0),
                bit_rate=_int(s.get("bit_rate")),
            )
    return MediaProbe(
        format_name=fmt.get("format_name", ""),
        duration=float(fmt.get("duration") or 0.0),
        size=int(fmt.get("size") or 0),
        bit_rate=_int(fmt.get("bit_rate")),
        video=video,
        audio=audio,
        raw=data,
    )


# First name of a demuxer -> (content type with video, content type of audio only).
_CONTENT_TYPES = {
    "matroska": ("video/x-matroska", "audio/x-matroska"),
    "avi": ("video/x-msvideo", "video/x-msvideo"),
    "flv": ("video/x-flv", "video/x-flv"),
    "mpegts": ("video/mp2t", "video/mp2t"),
    "mpeg": ("video/mpeg", "audio/mpeg"),
    "mpegvideo": ("video/mpeg", "video/mpeg"),
    "asf": ("video/x-ms-asf", "audio/x-ms-wma"),
    "ogg": ("video/ogg", "audio/ogg"),
    "mxf": ("application/mxf", "application/mxf"),
    "gif": ("image/gif", "image/gif"),
    "mp3": ("audio/mpeg", "audio/mpeg"),
    "aac": ("audio/aac", "audio/aac"),
    "ac3": ("audio/ac3", "audio/ac3"),
    "wav": ("audio/wav", "audio/wav"),
    "flac": ("audio/flac", "audio/flac"),
    "aiff": ("audio/aiff", "audio/aiff"),
    "amr": ("audio/amr", "audio/amr"),
}
_WEBM_CODECS = {"vp8", "vp9", "av1", "opus", "vorbis"}


def content_type(probe: MediaProbe) -> str:
    """The MIME type of a probed file, from its container (and brand, codecs)."""
    names = probe.format_name.split(",")
    has_video = probe.video is not None
    if names[0] == "mov":
        brand = str(((probe.raw.get("format") or {}).get("tags") or {}).get("major_brand", "")).strip()
        if brand == "qt":
            return "video/quicktime"
        if brand.startswith("3gp"):
            return "video/3gpp" if has_video else "audio/3gpp"
        return "video/mp4" if has_video else "audio/mp4"
    if names[0] == "matroska":
        codecs = {s.codec for s in (probe.video, probe.audio) if s is not None}
        if codecs <= _WEBM_CODECS:
            return "video/webm" if has_video else "audio/webm"
    video_type, audio_type = _CONTENT_TYPES.get(names[0], ("application/octet-stream",) * 2)
    return video_type if has_video else audio_type


async def probe_media(path: Path, *, timeout: float | None = None) -> MediaProbe:
    """ffprobe ``path`` (a local file); TaskError if it is not media, or is in a format that
    is not on ``ALLOWED_FORMATS`` (playlists, concat lists). Killed after ``timeout`` s
    (default: the ``probe_timeout`` setting)."""
    try:
        out, _ = await run_tool(
            ["ffprobe", "-v", "error", "-protocol_whitelist", INPUT_PROTOCOLS,
             "-format_whitelist", FORMAT_WHITELIST,
             "-print_format", "json", "-show_format", "-show_streams", str(path)],
            timeout=timeout or get_settings().probe_timeout, what="ffprobe",
        )
    except TaskError as exc:
        refused = re.search(r"\[([\w,]+) @ [^]]*\] Format not on whitelist", str(exc))
        if refused:
            raise TaskError(
                f"input format {refused[1]!r} is not accepted (playlists, concat lists and other"
                " formats that name further files are refused)"
            ) from None
        raise TaskError(str(exc).replace(str(path), path.name)) from None
    probe = parse_probe(json.loads(out or b"{}"))
    if probe.video is None and probe.audio is None:
        raise TaskError("the input has no audio or video stream")
    return probe


@step("probe", run_name="probe {path.name}")
async def probe_input(path: Path) -> MediaProbe:
    """``probe_media`` as a step."""
    probe = await probe_media(path)
    step_log("%s: %s", path.name, probe.summary())
    return probe

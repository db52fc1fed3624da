"""ffmpeg and ffprobe, used safely: argument lists (never a shell), a timeout that kills the
process, inputs restricted to local files (no network, playlist or concat tricks), and
progress parsed from ``-progress``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Awaitable, Callable

from flows.errors import TaskError

INPUT_PROTOCOLS = "file,pipe"
# Demuxers that make ffmpeg open other files or URLs named inside the input.
REFUSED_FORMATS = {"hls", "applehttp", "concat", "ffconcat", "dash", "rtsp", "sdp", "tee", "image2"}
DEFAULT_TIMEOUT = 600.0
ALPHA_PIX_FMTS = ("yuva", "rgba", "argb", "bgra", "abgr", "gbrap", "ya")

ProgressCallback = Callable[[float], Awaitable[None]]


async def run_tool(args: list[str], *, timeout: float, what: str) -> tuple[bytes, bytes]:
    """Run a command; (stdout, stderr). Killed after ``timeout`` s; TaskError on failure."""
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise TaskError(f"{what} took longer than {timeout:.0f} s and was stopped") from None
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise TaskError(f"{what} failed: {' '.join(tail) or f'exit code {process.returncode}'}")
    return out, err


@dataclass(frozen=True)
class VideoStream:
    codec: str
    width: int
    height: int
    frame_rate: float
    rotation: float
    alpha: bool
    pix_fmt: str | None


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
                alpha=bool(pix and pix.startswith(ALPHA_PIX_FMTS)),
                pix_fmt=pix,
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


async def probe_media(path: Path, *, timeout: float = 60.0) -> MediaProbe:
    """ffprobe ``path`` (a local file); TaskError if it is not media or is a playlist."""
    out, _ = await run_tool(
        ["ffprobe", "-v", "error", "-protocol_whitelist", INPUT_PROTOCOLS,
         "-print_format", "json", "-show_format", "-show_streams", str(path)],
        timeout=timeout, what="ffprobe",
    )
    probe = parse_probe(json.loads(out or b"{}"))
    if set(probe.format_name.split(",")) & REFUSED_FORMATS:
        raise TaskError(f"input format {probe.format_name!r} (playlists, concat lists) is not accepted")
    if probe.video is None and probe.audio is None:
        raise TaskError("the input has no audio or video stream")
    return probe


def input_args(path: Path, format_name: str | None = None) -> list[str]:
    """ffmpeg options and ``-i`` for a probed local input, pinned to its probed demuxer."""
    pinned = ["-f", format_name.split(",")[0]] if format_name else []
    return ["-protocol_whitelist", INPUT_PROTOCOLS, *pinned, "-i", str(path)]


async def run_ffmpeg(
    args: list[str],
    *,
    duration: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressCallback | None = None,
) -> None:
    """Run ``ffmpeg <args>``; ``progress(percent)`` is called as output time advances
    through ``duration`` seconds. Killed after ``timeout`` s; TaskError on failure."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-progress", "pipe:1", *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )

    async def read_progress() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and progress and duration and value.isdigit():
                await progress(min(99.0, int(value) / 1e6 / duration * 100))

    try:
        _, err, _ = await asyncio.wait_for(
            asyncio.gather(read_progress(), process.stderr.read(), process.wait()), timeout
        )
    except (asyncio.TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise TaskError(f"ffmpeg took longer than {timeout:.0f} s and was stopped") from None
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise TaskError(f"ffmpeg failed: {' '.join(tail) or f'exit code {process.returncode}'}")

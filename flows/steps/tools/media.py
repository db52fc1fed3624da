"""ffmpeg and ffprobe, used safely: argument lists (never a shell), one runner
(``ToolProcess``) that times out, kills and reaps every process, inputs restricted to local
files (no network, playlist or concat tricks), and progress parsed from ``-progress``."""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from flows.errors import TaskError

INPUT_PROTOCOLS = "file,pipe"
# The only demuxers an input may be read with: plain media containers and streams. Those that
# open other files or URLs named inside the input (hls, dash, concat/ffconcat, imf, image2,
# sdp, ...) are not on it, so a playlist, whatever its file name, is refused before it is read.
ALLOWED_FORMATS = (
    "mov", "matroska", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "m4v", "h264", "hevc",
    "asf", "ogg", "mxf", "dv", "gif", "nut", "ivf", "rm", "yuv4mpegpipe",
    "mp3", "aac", "ac3", "eac3", "dts", "truehd", "loas", "wav", "w64", "flac", "aiff", "caf",
    "amr", "wv", "ape", "tta", "au", "voc", "mpc", "mpc8", "xwma",
)
FORMAT_WHITELIST = ",".join(ALLOWED_FORMATS)
DEFAULT_TIMEOUT = 600.0
# Time allowed per second of media on top of DEFAULT_TIMEOUT (see ``ffmpeg_timeout``).
TIMEOUT_PER_SECOND = 4.0
ALPHA_PIX_FMTS = ("yuva", "rgba", "argb", "bgra", "abgr", "gbrap", "ya")
STDERR_LINES = 20
"""Lines of a tool's stderr kept from its start, and as many from its end."""

ProgressCallback = Callable[[float], Awaitable[None]]


class ToolProcess:
    """A command whose stdout is read as it comes, as an async context manager: the one piece
    of code that starts, times out and kills ffmpeg, ffprobe and the other tools.

    ``timeout`` s after the start the process is killed, and leaving the block raises
    TaskError("<what> took longer than ..."). Leaving the block on an error, on cancellation
    or before stdout has ended kills the process and reaps it. Leaving it after the end of
    stdout waits for the exit, and a non-zero exit code raises TaskError with the last lines
    of stderr. ``stderr`` keeps its first and last ``STDERR_LINES`` non-blank lines.
    """

    def __init__(self, command: list[str], *, timeout: float, what: str):
        self.command, self.timeout, self.what = command, timeout, what
        self.stderr_head: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.timed_out = False
        self._process: asyncio.subprocess.Process | None = None
        self._capture: asyncio.Task | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def stderr(self) -> str:
        return "\n".join([*self.stderr_head, *self.stderr_tail])

    async def __aenter__(self) -> "ToolProcess":
        self._process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout, self._expire)
        self._capture = asyncio.create_task(self._capture_stderr())
        return self

    def _stop(self) -> None:
        """Kill the process if it still runs (asyncio's child watcher reaps it)."""
        if self._process.returncode is None:
            with suppress(ProcessLookupError):
                self._process.kill()

    def _expire(self) -> None:
        self.timed_out = self._process.returncode is None
        self._stop()

    def _keep(self, line: bytes) -> None:
        text = line.decode(errors="replace").strip()
        if text:
            (self.stderr_head if len(self.stderr_head) < STDERR_LINES else self.stderr_tail).append(text)

    async def _capture_stderr(self) -> None:
        """Read stderr to its end (a full pipe would stall the tool), keeping its ends."""
        rest = b""
        while chunk := await self._process.stderr.read(1 << 16):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                self._keep(line)
        self._keep(rest)

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of stdout, fewer only at its end (``b""`` once it is over);
        all the rest of it when ``size`` is -1."""
        if size < 0:
            return await self._process.stdout.read()
        try:
            return await self._process.stdout.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    async def lines(self) -> AsyncIterator[str]:
        """Stdout line by line, stripped."""
        async for line in self._process.stdout:
            yield line.decode(errors="replace").strip()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        left_early = exc_type is not None or not self._process.stdout.at_eof()
        try:
            if left_early:
                self._stop()
                # Read what the dead process left in the pipe: a full, paused stdout pipe
                # is never closed, and asyncio's wait() waits for its pipes too.
                await self._process.stdout.read()
            await self._process.wait()
            await self._capture
        finally:
            self._watchdog.cancel()
            self._stop()  # cancelled while waiting: the process must not outlive the block
        if exc_type is not None:
            return
        if self.timed_out:
            raise TaskError(f"{self.what} took longer than {self.timeout:.0f} s and was stopped")
        if not left_early and self._process.returncode != 0:
            tail = " ".join([*self.stderr_head, *self.stderr_tail][-3:])
            raise TaskError(f"{self.what} failed: {tail or f'exit code {self._process.returncode}'}")


async def run_tool(args: list[str], *, timeout: float, what: str) -> tuple[bytes, bytes]:
    """Run a command to its end; (stdout, the ends of stderr). Killed after ``timeout`` s;
    TaskError on failure."""
    async with ToolProcess(args, timeout=timeout, what=what) as tool:
        out = await tool.read()
    return out, tool.stderr.encode()


def ffmpeg_stream(args: list[str], *, timeout: float = DEFAULT_TIMEOUT, loglevel: str = "error") -> ToolProcess:
    """``ffmpeg <args>`` as a ToolProcess (``async with``): its stdout is read as it comes."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", loglevel, *args]
    return ToolProcess(command, timeout=timeout, what="ffmpeg")


async def output_times(stream: ToolProcess) -> AsyncIterator[float]:
    """Seconds of output written so far, from the ``-progress pipe:1`` lines of ``stream``."""
    async for line in stream.lines():
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            yield int(value) / 1e6


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


async def probe_media(path: Path, *, timeout: float = 60.0) -> MediaProbe:
    """ffprobe ``path`` (a local file); TaskError if it is not media, or is in a format that
    is not on ``ALLOWED_FORMATS`` (playlists, concat lists)."""
    try:
        out, _ = await run_tool(
            ["ffprobe", "-v", "error", "-protocol_whitelist", INPUT_PROTOCOLS,
             "-format_whitelist", FORMAT_WHITELIST,
             "-print_format", "json", "-show_format", "-show_streams", str(path)],
            timeout=timeout, what="ffprobe",
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


def input_args(path: Path, format_name: str | None = None, *, seek: float | None = None) -> list[str]:
    """ffmpeg options and ``-i`` for a probed local input, pinned to its probed demuxer.

    ``seek`` (seconds) seeks the input before decoding starts: a frame deep into a long
    file costs about what one near its start costs.
    """
    pinned = ["-f", format_name.split(",")[0]] if format_name else []
    start = ["-ss", f"{seek:.6f}"] if seek else []
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-format_whitelist", FORMAT_WHITELIST,
            *pinned, *start, "-i", str(path)]


def ffmpeg_timeout(duration: float) -> float:
    """A timeout for an ffmpeg run over ``duration`` seconds of media."""
    return DEFAULT_TIMEOUT + TIMEOUT_PER_SECOND * max(0.0, duration)


async def run_ffmpeg(
    args: list[str],
    *,
    duration: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressCallback | None = None,
) -> None:
    """Run ``ffmpeg <args>``; ``progress(percent)`` is called as output time advances
    through ``duration`` seconds. Killed after ``timeout`` s; TaskError on failure."""
    async with ffmpeg_stream(["-y", "-progress", "pipe:1", *args], timeout=timeout) as stream:
        async for seconds in output_times(stream):
            if progress and duration and seconds >= 0:
                await progress(min(99.0, seconds / duration * 100))

"""ffmpeg used safely: inputs restricted to local files and an allow-list of demuxers (no
network, playlist or concat tricks), timeouts from the settings, progress from ``-progress``."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from flows.settings import get_settings
from flows.steps.tools.process import ToolProcess

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

ProgressCallback = Callable[[float], Awaitable[None]]


def ffmpeg_timeout(duration: float = 0.0) -> float:
    """Seconds an ffmpeg run over ``duration`` seconds of media may take (settings
    ``tool_timeout`` + ``tool_timeout_per_second`` × duration)."""
    settings = get_settings()
    return settings.tool_timeout + settings.tool_timeout_per_second * max(0.0, duration)


def ffmpeg_stream(args: list[str], *, timeout: float | None = None, loglevel: str = "error") -> ToolProcess:
    """``ffmpeg <args>`` as a ToolProcess (``async with``): its stdout is read as it comes.
    ``timeout`` defaults to ``ffmpeg_timeout()``."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", loglevel, *args]
    return ToolProcess(command, timeout=ffmpeg_timeout() if timeout is None else timeout, what="ffmpeg")


async def output_times(stream: ToolProcess) -> AsyncIterator[float]:
    """Seconds of output written so far, from the ``-progress pipe:1`` lines of ``stream``."""
    async for line in stream.lines():
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            yield int(value) / 1e6


def input_args(path: Path, format_name: str | None = None, *, seek: float | None = None) -> list[str]:
    """ffmpeg options and ``-i`` for a probed local input, pinned to its probed demuxer.

    ``seek`` (seconds) seeks the input before decoding starts: a frame deep into a long
    file costs about what one near its start costs.
    """
    pinned = ["-f", format_name.split(",")[0]] if format_name else []
    start = ["-ss", f"{seek:.6f}"] if seek else []
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-format_whitelist", FORMAT_WHITELIST,
            *pinned, *start, "-i", str(path)]


async def run_ffmpeg(
    args: list[str],
    *,
    duration: float | None = None,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Run ``ffmpeg <args>``; ``progress(percent)`` is called as output time advances
    through ``duration`` seconds. Killed after ``timeout`` s (default:
    ``ffmpeg_timeout(duration)``); TaskError on failure."""
    timeout = ffmpeg_timeout(duration or 0.0) if timeout is None else timeout
    async with ffmpeg_stream(["-y", "-progress", "pipe:1", *args], timeout=timeout) as stream:
        async for seconds in output_times(stream):
            if progress and duration and seconds >= 0:
                await progress(min(99.0, seconds / duration * 100))

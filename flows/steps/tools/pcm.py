"""Audio decoded to PCM chunks (never the whole file in memory) and a demux-only pass that
measures where an audio stream really ends, both on ``ffmpeg.ffmpeg_stream`` (its timeout and
kill) with inputs through ``ffmpeg.input_args`` (local files only, whitelisted demuxers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from flows.steps.tools.ffmpeg import ProgressCallback, ffmpeg_stream, ffmpeg_timeout, input_args, output_times
from flows.steps.tools.probe import MediaProbe


async def decode_pcm(
    path: Path,
    probe: MediaProbe,
    *,
    rate: int,
    start: float = 0.0,
    duration: float | None = None,
    chunk_seconds: float = 5.0,
    progress: ProgressCallback | None = None,
) -> AsyncIterator[np.ndarray]:
    """The first audio stream of ``path`` as mono float32 chunks at ``rate`` Hz, from
    ``start`` for ``duration`` seconds (to the end when None).

    ``progress(percent)`` follows the decoded time. Use with ``contextlib.aclosing`` when the
    loop may stop early, so that ffmpeg is stopped at once.
    """
    span = duration if duration is not None else max(0.0, probe.duration - start)
    limit = ["-t", f"{duration:.6f}"] if duration is not None else []
    args = [
        *input_args(path, probe.format_name, seek=start or None), *limit,
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1",
    ]
    chunk_bytes = 4 * max(1, int(rate * chunk_seconds))
    decoded = 0
    async with ffmpeg_stream(args, timeout=ffmpeg_timeout(span)) as stream:
        while data := await stream.read(chunk_bytes):
            samples = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")
            decoded += len(samples)
            yield samples
            if progress and span > 0:
                await progress(min(99.0, decoded / rate / span * 100))


@dataclass(frozen=True)
class AudioExtent:
    """Where the first audio stream's packets really end, read by demuxing the whole file."""

    end: float
    """Time of the last audio packet, in seconds (within one packet of the true end)."""
    estimated: bool
    """True when the container's duration is only an estimate from the bit rate (ADTS AAC,
    MP3 without a Xing header): then ``end`` is the better duration."""


async def measure_audio(path: Path, probe: MediaProbe) -> AudioExtent:
    """Demux (without decoding) the first audio stream to the end: fast, and it tells a
    truncated file from a whole one."""
    args = [
        "-progress", "pipe:1", "-nostats",
        *input_args(path, probe.format_name), "-map", "0:a:0", "-c", "copy", "-f", "null", "-",
    ]
    end = 0.0
    async with ffmpeg_stream(args, timeout=ffmpeg_timeout(0.0), loglevel="warning") as stream:
        async for seconds in output_times(stream):
            end = max(end, seconds)
    return AudioExtent(end=end, estimated="Estimating duration from bitrate" in stream.stderr)

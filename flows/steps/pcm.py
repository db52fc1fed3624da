"""Streaming ffmpeg output: audio decoded to PCM chunks (never the whole file in memory) and
a demux-only pass that measures where an audio stream really ends.

Same safety rules as ``media.run_ffmpeg``: an argument list (never a shell), inputs through
``media.input_args`` (local files only, whitelisted demuxers) and a deadline after which the
process is killed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from flows.errors import TaskError
from flows.steps.media import MediaProbe, ProgressCallback, ffmpeg_timeout, input_args

STDERR_LINES = 20


class FFmpegPipe:
    """``ffmpeg <args>`` whose stdout is read in chunks, as an async context manager.

    Leaving the block early (or on an error) kills the process; leaving it normally waits for
    the exit and raises TaskError on a non-zero exit code. ``stderr`` keeps the first and
    the last lines.
    """

    def __init__(self, args: list[str], *, timeout: float, loglevel: str = "error"):
        self.command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", loglevel, *args]
        self.timeout = timeout
        self.stderr_head: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task | None = None
        self._deadline = 0.0

    @property
    def stderr(self) -> str:
        return "\n".join([*self.stderr_head, *self.stderr_tail])

    async def __aenter__(self) -> "FFmpegPipe":
        self._deadline = time.monotonic() + self.timeout
        self._process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self._drain = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        async for line in self._process.stderr:
            text = line.decode(errors="replace").rstrip()
            (self.stderr_head if len(self.stderr_head) < STDERR_LINES else self.stderr_tail).append(text)

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    async def _stop(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()
        self._drain.cancel()

    async def _timed_out(self) -> TaskError:
        await self._stop()
        return TaskError(f"ffmpeg took longer than {self.timeout:.0f} s and was stopped")

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of stdout (fewer only at the end; ``b""`` once it is over)."""
        try:
            return await asyncio.wait_for(self._process.stdout.readexactly(size), self._remaining())
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.TimeoutError:
            raise await self._timed_out() from None

    async def lines(self) -> AsyncIterator[str]:
        """Stdout line by line (for ``-progress pipe:1``)."""
        while True:
            try:
                line = await asyncio.wait_for(self._process.stdout.readline(), self._remaining())
            except asyncio.TimeoutError:
                raise await self._timed_out() from None
            if not line:
                return
            yield line.decode(errors="replace").strip()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            await self._stop()
            return
        try:
            await asyncio.wait_for(self._process.wait(), self._remaining())
            await asyncio.wait_for(self._drain, self._remaining())
        except asyncio.TimeoutError:
            raise await self._timed_out() from None
        if self._process.returncode != 0:
            tail = " ".join([*self.stderr_head, *self.stderr_tail][-3:])
            raise TaskError(f"ffmpeg failed: {tail or f'exit code {self._process.returncode}'}")


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
    async with FFmpegPipe(args, timeout=ffmpeg_timeout(span)) as pipe:
        while data := await pipe.read(chunk_bytes):
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
    end_us = 0
    async with FFmpegPipe(args, timeout=ffmpeg_timeout(0.0), loglevel="warning") as pipe:
        async for line in pipe.lines():
            key, _, value = line.partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                end_us = max(end_us, int(value))
    return AudioExtent(end=end_us / 1e6, estimated="Estimating duration from bitrate" in pipe.stderr)

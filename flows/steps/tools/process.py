"""The one runner of external tools (ffmpeg, ffprobe, espeak-ng): argument lists (never a
shell), a timeout after which the process is killed, and every process reaped."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from typing import AsyncIterator

from flows.errors import TaskError

STDERR_LINES = 20
"""Lines of a tool's stderr kept from its start, and as many from its end."""

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

"""The one ffmpeg/ffprobe runner (``media.ToolProcess``): timeouts, early exits, failures and
streamed output, with real ffmpeg on lavfi-generated inputs (no service)."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from flows.errors import TaskError
from flows.steps.tools.ffmpeg import ffmpeg_stream, run_ffmpeg
from flows.steps.tools.pcm import decode_pcm, measure_audio
from flows.steps.tools.probe import probe_media
from flows.steps.tools.process import ToolProcess, run_tool

# Read in real time (-re): without it lavfi makes 600 s of sine in ~0.3 s, before any timeout.
ENDLESS_SINE = ["-re", "-f", "lavfi", "-i", "sine=d=600:r=11025"]
PCM_OUT = ["-ac", "1", "-f", "s16le", "pipe:1"]


def ffmpeg_children() -> list[int]:
    """Pids of this process's ffmpeg children, running or zombie (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == "ffmpeg" and int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
async def tone(tmp_path) -> Path:
    """A 1 s, 11025 Hz mono 16-bit WAV."""
    path = tmp_path / "tone.wav"
    await run_ffmpeg(["-f", "lavfi", "-i", "sine=d=1:r=11025", "-ac", "1", "-c:a", "pcm_s16le", str(path)], timeout=30)
    return path


async def test_a_timeout_kills_a_long_ffmpeg():
    started = time.monotonic()
    with pytest.raises(TaskError, match="^ffmpeg took longer than 0 s and was stopped$"):
        await run_ffmpeg([*ENDLESS_SINE, "-f", "null", "-"], timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 2
    assert ffmpeg_children() == []


async def test_a_timeout_stops_a_stream_being_read():
    received = 0
    started = time.monotonic()
    with pytest.raises(TaskError, match="ffmpeg took longer than"):
        async with ffmpeg_stream([*ENDLESS_SINE, *PCM_OUT], timeout=0.5) as stream:
            while data := await stream.read(4096):
                received += len(data)
    assert time.monotonic() - started < 2
    assert 0 < received < 2 * 11025 * 2  # real time: about 0.5 s of samples came before the kill
    assert not Path(f"/proc/{stream.pid}").exists()


async def test_leaving_a_stream_early_kills_the_process():
    started = time.monotonic()
    async with ffmpeg_stream([*ENDLESS_SINE, *PCM_OUT], timeout=30) as stream:
        assert len(await stream.read(4096)) == 4096
        assert ffmpeg_children() == [stream.pid]
    assert time.monotonic() - started < 2
    assert not Path(f"/proc/{stream.pid}").exists()  # killed and reaped, no zombie

    with pytest.raises(ZeroDivisionError):
        async with ffmpeg_stream([*ENDLESS_SINE, *PCM_OUT], timeout=30) as stream:
            await stream.read(4096)
            1 / 0
    assert not Path(f"/proc/{stream.pid}").exists()


async def test_cancelling_run_ffmpeg_kills_the_process():
    running = asyncio.create_task(run_ffmpeg([*ENDLESS_SINE, "-f", "null", "-"], timeout=30))
    await asyncio.sleep(0.5)
    assert len(ffmpeg_children()) == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert ffmpeg_children() == []


async def test_closing_decode_pcm_early_kills_ffmpeg(tmp_path):
    long = tmp_path / "long.wav"
    await run_ffmpeg(["-f", "lavfi", "-i", "sine=d=60:r=11025", "-c:a", "pcm_s16le", str(long)], timeout=30)
    probe = await probe_media(long)
    async with aclosing(decode_pcm(long, probe, rate=11025, chunk_seconds=1.0)) as chunks:
        async for chunk in chunks:
            assert len(chunk) == 11025
            assert len(ffmpeg_children()) == 1  # 60 s of samples do not fit in the pipe
            break
    assert ffmpeg_children() == []


async def test_a_failing_ffmpeg_reports_its_stderr(tmp_path):
    with pytest.raises(TaskError, match=r"^ffmpeg failed: Unrecognized option 'no_such_option'\."):
        await run_ffmpeg(["-f", "lavfi", "-i", "sine=d=1", "-no_such_option", "1", "-f", "null", "-"])
    with pytest.raises(TaskError, match=r"^ffmpeg failed: .*Option 'nosuch' not found"):
        async with ffmpeg_stream(["-f", "lavfi", "-i", "sine=nosuch=1", *PCM_OUT], timeout=30) as stream:
            assert await stream.read() == b""
    with pytest.raises(TaskError, match="^ffprobe failed: .*No such file or directory"):
        await run_tool(["ffprobe", "-v", "error", str(tmp_path / "missing.wav")], timeout=30, what="ffprobe")
    assert ffmpeg_children() == []


async def test_stderr_keeps_its_first_and_last_lines():
    script = "for i in $(seq 100); do echo line$i >&2; done; echo out; exit 3"
    with pytest.raises(TaskError, match="^sh failed: line98 line99 line100$"):
        async with ToolProcess(["sh", "-c", script], timeout=30, what="sh") as tool:
            assert await tool.read() == b"out\n"
    kept = tool.stderr.splitlines()
    assert kept[:2] == ["line1", "line2"] and kept[-1] == "line100"
    assert len(kept) == 40 and "line50" not in kept


async def test_streamed_chunks_add_up_to_the_pcm_size(tone):
    sizes = []
    async with ffmpeg_stream(["-f", "lavfi", "-i", "sine=d=1:r=11025", *PCM_OUT], timeout=30) as stream:
        while data := await stream.read(4096):
            sizes.append(len(data))
    assert sum(sizes) == 11025 * 2  # 1 s, mono, 2 bytes a sample
    assert len(sizes) == 6 and set(sizes[:-1]) == {4096}

    probe = await probe_media(tone)
    chunks = [chunk async for chunk in decode_pcm(tone, probe, rate=11025, chunk_seconds=0.25)]
    assert [len(c) for c in chunks] == [2756, 2756, 2756, 2756, 1]
    assert 0.1 < max(abs(c).max() for c in chunks) <= 1.0  # the sine, as float samples
    extent = await measure_audio(tone, probe)
    assert extent.end == pytest.approx(1.0, abs=0.05) and not extent.estimated
    out, _ = await run_tool(["ffprobe", "-v", "error", "-show_entries", "stream=sample_rate", "-of", "csv=p=0",
                             str(tone)], timeout=30, what="ffprobe")
    assert out.strip() == b"11025"

"""Waveform images (``audio.waveform``): the min/max envelope of a streamed decode, drawn
with Pillow. Memory depends on the duration only through a few values per 10 ms."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import numpy as np
from PIL import Image

from flows.errors import TaskError
from flows.steps.audio.probe import AudioInput
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback
from flows.steps.tools.pcm import decode_pcm

RATE = 11025
"""Decode rate (mono): plenty for an envelope a few thousand pixels wide."""
MAX_BLOCK = RATE // 100
BLOCKS_PER_COLUMN = 4
# format parameter -> (Pillow format, file extension, content type, save options)
FORMATS = {
    "png": ("PNG", "png", "image/png", {"optimize": True}),
    "jpeg": ("JPEG", "jpg", "image/jpeg", {"quality": 90}),
}


class PeakEnvelope:
    """Minimum and maximum of each ``block`` samples of a stream fed chunk by chunk."""

    def __init__(self, block: int):
        self.block = max(1, block)
        self._rest = np.empty(0, dtype=np.float32)
        self._mins: list[np.ndarray] = []
        self._maxs: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> None:
        data = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        whole = len(data) // self.block * self.block
        if whole:
            blocks = data[:whole].reshape(-1, self.block)
            self._mins.append(blocks.min(axis=1))
            self._maxs.append(blocks.max(axis=1))
        self._rest = data[whole:].copy()

    def columns(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(minimum, maximum) per image column, the stream spread over ``width`` columns."""
        mins, maxs = list(self._mins), list(self._maxs)
        if len(self._rest):
            mins.append(self._rest[None].min(axis=1))
            maxs.append(self._rest[None].max(axis=1))
        if not mins:
            return np.zeros(width, np.float32), np.zeros(width, np.float32)
        low, high = np.concatenate(mins), np.concatenate(maxs)
        starts = np.minimum(np.arange(width) * len(low) // width, len(low) - 1)
        return np.minimum.reduceat(low, starts), np.maximum.reduceat(high, starts)


def block_size(seconds: float, width: int) -> int:
    """Samples per envelope block: at most 10 ms, and several blocks per image column."""
    return max(1, min(MAX_BLOCK, int(seconds * RATE / (width * BLOCKS_PER_COLUMN))))


def render_waveform(
    low: np.ndarray, high: np.ndarray, *, height: int, vmargin: int, fill: str, background: str
) -> Image.Image:
    """Each column filled from its minimum to its maximum; full scale (±1) reaches ``vmargin``."""
    width = len(low)
    middle = (height - 1) / 2
    half = max(0.0, (height - 1) / 2 - vmargin)
    top = np.round(middle - np.clip(high, -1, 1) * half)
    bottom = np.round(middle - np.clip(low, -1, 1) * half)
    rows = np.arange(height)[:, None]
    mask = (rows >= top[None, :]) & (rows <= bottom[None, :])
    image = Image.new("RGB", (width, height), background)
    image.paste(fill, mask=Image.fromarray(mask.astype(np.uint8) * 255, "L"))
    return image


@step("waveform", run_name="waveform {width}x{height}")
async def draw_waveform(
    source: Path,
    audio: AudioInput,
    dest_dir: Path,
    *,
    width: int,
    height: int,
    vmargin: int = 0,
    fill: str = "#000000",
    background: str = "#FFFFFF",
    start: float = 0.0,
    end: float | None = None,
    format: str = "jpeg",
    progress: ProgressCallback | None = None,
) -> tuple[Path, str]:
    """Draw the waveform of ``source`` from ``start`` to ``end`` (seconds; the end of the
    audio when None); returns (image path, content type)."""
    stop = audio.duration if end is None else min(end, audio.duration)
    if start >= stop:
        raise TaskError(f"start ({start:g} s) is not before the end of the audio ({stop:.2f} s)")
    envelope = PeakEnvelope(block_size(stop - start, width))
    limit = None if end is None else stop - start
    async with aclosing(decode_pcm(source, audio.probe, rate=RATE, start=start, duration=limit,
                                   progress=progress)) as chunks:
        async for chunk in chunks:
            envelope.add(chunk)
    low, high = envelope.columns(width)
    image = await asyncio.to_thread(
        render_waveform, low, high, height=height, vmargin=vmargin, fill=fill, background=background
    )
    pil_format, ext, mime, options = FORMATS[format]
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"waveform.{ext}"
    await asyncio.to_thread(image.save, path, pil_format, **options)
    step_log("%s: %dx%d over %.2f s from %.2f s", path.name, width, height, stop - start, start)
    return path, mime

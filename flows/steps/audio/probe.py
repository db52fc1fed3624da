"""Probe an audio input and refuse what the audio tasks cannot use: files that are not media,
media without an audio stream, and truncated files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.errors import TaskError
from flows.steps.step import step, step_log
from flows.steps.tools.pcm import measure_audio
from flows.steps.tools.probe import MediaProbe, content_type, probe_media

# A file is truncated when its audio ends before this share of the duration it announces
# (less TRUNCATION_SLACK seconds): container durations are exact to a packet or two.
TRUNCATION_RATIO = 0.9
TRUNCATION_SLACK = 0.5


@dataclass(frozen=True)
class AudioInput:
    """A checked audio input: its probe, real duration, content type and codec."""

    probe: MediaProbe
    duration: float
    content_type: str
    codec: str


def _announced_audio_duration(probe: MediaProbe) -> float:
    """The first audio stream's own duration when the container gives one, else the file's."""
    for stream in probe.raw.get("streams") or []:
        if stream.get("codec_type") == "audio":
            try:
                return float(stream["duration"])
            except (KeyError, TypeError, ValueError):
                break
    return probe.duration


@step("probe", run_name="probe {path.name}")
async def probe_audio(path: Path) -> AudioInput:
    """Probe ``path`` and measure its audio stream; TaskError naming what is wrong otherwise."""
    try:
        probe = await probe_media(path)
    except TaskError as exc:
        raise TaskError(f"the input is not a readable audio file ({exc})") from None
    if probe.audio is None:
        kind = "video" if probe.video is not None else "media"
        raise TaskError(f"the input has no audio stream (it is a {kind} file in {probe.format_name!r} format)")
    extent = await measure_audio(path, probe)
    duration = _announced_audio_duration(probe)
    if extent.estimated or duration <= 0:
        duration = extent.end
    elif extent.end < duration * TRUNCATION_RATIO - TRUNCATION_SLACK:
        raise TaskError(
            f"the input looks truncated: its audio stops at {extent.end:.2f} s"
            f" but the file announces {duration:.2f} s"
        )
    if duration <= 0:
        raise TaskError("the input's audio stream is empty")
    step_log("%s: %s; %.2f s of audio", path.name, probe.summary(), duration)
    return AudioInput(probe=probe, duration=duration, content_type=content_type(probe), codec=probe.audio.codec)

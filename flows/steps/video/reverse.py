"""Reverse a video (and its audio) with bounded memory.

ffmpeg's ``reverse`` filter holds every frame of its input until the end, so a long input is
cut into segments of a few seconds that are each decoded from a seek, reversed and encoded;
the encoded segments are then joined last-first without re-encoding the video. Segment
boundaries are applied by ``trim`` on the input's own timestamps, so every frame and audio
sample lands in exactly one segment. The audio of each segment is kept as PCM and encoded
once at the end, so no encoder padding is inserted between segments.
"""

from __future__ import annotations

import math
from pathlib import Path

from flows.errors import TaskError
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import INPUT_PROTOCOLS, ProgressCallback, ffmpeg_timeout, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe
from flows.steps.video.encode import Encoding
from flows.steps.video.scaling import scale_filter

# Decoded frames a segment may hold (the reverse filter buffers them all).
SEGMENT_BUFFER_BYTES = 256 * 1024 * 1024
MAX_SEGMENT_SECONDS = 60.0
# Seek this much before a segment's start: formats that seek inexactly still cover it.
_SEEK_MARGIN = 1.0


def segment_seconds(size: tuple[int, int], frame_rate: float, budget: int = SEGMENT_BUFFER_BYTES) -> float:
    """The segment length whose ``size`` frames (4:2:0) fit in ``budget`` bytes."""
    frames = max(1, budget // (size[0] * size[1] * 3 // 2))
    return min(MAX_SEGMENT_SECONDS, frames / (frame_rate or 25.0))


@step("reverse", run_name=lambda parameters: "reverse {}x{}".format(*parameters["size"]))
async def reverse_video(
    src: Path,
    probe: MediaProbe,
    dest: Path,
    size: tuple[int, int],
    *,
    crop: bool,
    encoding: Encoding,
    progress: ProgressCallback | None = None,
    segment: float | None = None,
) -> None:
    """Write ``src`` reversed, scaled to ``size`` (even sides) and encoded with ``encoding``,
    to ``dest``; segments of ``segment`` seconds (default: ``segment_seconds``)."""
    video = probe.video
    if video is None:
        raise TaskError("the input has no video stream")
    duration = video.duration or probe.duration
    if duration <= 0:
        raise TaskError("the input's duration is unknown")
    length = segment or segment_seconds(size, video.frame_rate)
    count = max(1, math.ceil(duration / length))
    work = dest.parent / "segments"
    work.mkdir(parents=True, exist_ok=True)
    videos, audios = [], []
    for done, index in enumerate(reversed(range(count))):  # the input's end opens the output
        start = index * length
        end = None if index == count - 1 else (index + 1) * length
        first = start if index else None  # the first and last segments are open-ended
        video_name, audio_name = f"v{index:05d}.mp4", f"a{index:05d}.wav"
        videos.append(video_name)
        graph = (f"[0:v:0]{_trim('trim', first, end)},setpts=PTS-STARTPTS,{scale_filter(size, crop)},"
                 "format=yuv420p,reverse[v]")
        outputs = ["-map", "[v]", *encoding.video_args(), "-fps_mode", "passthrough", "-an",  # frames kept 1:1
                   "-f", "mp4", str(work / video_name)]
        if probe.audio is not None:  # cut at the video's end, so that both reversed start together
            audios.append(audio_name)
            graph += f";[0:a:0]{_trim('atrim', first, end or duration)},asetpts=PTS-STARTPTS,areverse[a]"
            outputs += ["-map", "[a]", "-vn", "-c:a", "pcm_s16le", "-f", "wav", str(work / audio_name)]
        part = (end or duration) - start

        async def segment_progress(percent: float, done: int = done) -> None:
            if progress:
                await progress(95 * (done + percent / 100) / count)

        await run_ffmpeg(
            ["-copyts", "-start_at_zero", "-noaccurate_seek",
             *input_args(src, probe.format_name, seek=max(0.0, start - _SEEK_MARGIN)),
             "-filter_complex", graph, *outputs],
            duration=part, progress=segment_progress,
        )
    await _join(work, videos, audios, dest, encoding, probe, duration)
    step_log("%.2f s reversed in %d segment(s) of %.1f s to %s (%d bytes)", duration, count, length, dest.name,
             dest.stat().st_size)


async def _join(
    work: Path, videos: list[str], audios: list[str], dest: Path, encoding: Encoding,
    probe: MediaProbe, duration: float,
) -> None:
    """Concatenate the reversed segments: video copied, audio encoded once."""
    args = _concat_input(work / "videos.txt", videos)
    maps = ["-map", "0:v:0", "-c:v", "copy"]
    if audios:
        args += _concat_input(work / "audios.txt", audios)
        maps += ["-map", "1:a:0", *encoding.audio_args(probe.audio.channels)]
    await run_ffmpeg([*args, *maps, *encoding.muxer_args(), str(dest)], timeout=ffmpeg_timeout(duration))


def _trim(name: str, start: float | None, end: float | None) -> str:
    """A ``trim``/``atrim`` filter keeping input timestamps in [start, end) (open ends: None)."""
    bounds = [f"{key}={value:.6f}" for key, value in (("start", start), ("end", end)) if value is not None]
    return f"{name}={':'.join(bounds)}" if bounds else "null" if name == "trim" else "anull"


def _concat_input(listing: Path, names: list[str]) -> list[str]:
    """Input options reading our own segment files, in order, as one stream."""
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file {name}\n" for name in names))
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-f", "concat", "-safe", "1", "-i", str(listing)]

"""The movie as ffmpeg processes: a ``Plan`` (timeline.py) -> an H.264/AAC MP4.

``build(plan, media, profile, dest, work_dir)`` turns the plan into a ``Command``: its ffmpeg
processes (inputs, a ``filter_complex`` script, the encode), usually one; ``render_movie`` runs
them through ``run_ffmpeg`` (timeout, progress). No Python touches a frame while ffmpeg runs: stills and texts are
prepared once with Pillow (``stills.py``) and looped by the graph.

The parts, one job each:

- ``scene.py``: the plan's tree as the video graph (groups, leaves) on ``graph.py``'s
  frame-counted streams; ``transitions.py`` (``xfade``), ``motion.py`` (Ken Burns),
  ``modifiers.py`` (filters and animators), ``stills.py`` (pictures, colour plates and texts
  prepared with Pillow), ``text.py`` (text drawing);
- ``mix.py``: the loudness-normalised audio mix (a silent movie gets a silent AAC track: every
  player expects one);
- ``chunks.py``: the windows of a long movie;
- here: the encode and the commands.

**Long movies** render window by window (``chunks.py``: windows of about ``CHUNK_SECONDS``,
cut only where cutting changes nothing in the picture), one ffmpeg process each writing H.264
in MPEG-TS with continuing timestamps; a last process joins them (stream copy) to the sound
mix. One graph for a whole movie keeps memory for every picture in it until the end; a window's
graph holds only what it shows, so the peak memory no longer grows with the movie's length.

**Time** is counted in frames of the profile's rate: an absolute time ``t`` is frame
``round(t × fps)``, every stream of the graph has the time base ``1/fps`` and frame-exact
length, so a sequence's items, its transitions' overlaps and the whole movie add up to the
plan's duration to the frame.

**Colour**: every input is brought to BT.709, limited range, 4:2:0 (stills when they are
prepared, videos by ``scale`` from their own tags, untagged = BT.601) and the file is tagged
BT.709 (primaries, transfer, matrix, limited range), so players show the colours of the inputs.

**Encode**: H.264 (``libx264``, preset from the ``x264_preset`` setting, CRF ``CRF``, High
profile, yuv420p, a key frame every ``KEYFRAME_SECONDS``), AAC 48 kHz stereo, constant frame
rate, ``+faststart`` MP4. The preview is the same graph at ``preview_profile`` (height ≤
``PREVIEW_HEIGHT``, ≤ ``PREVIEW_FPS`` fps, ``ultrafast``, no supersampling).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Awaitable, Callable

from flows.create import chunks
from flows.create.graph import frame_at, num
from flows.create.profiles import Profile
from flows.create.scene import Media, Scene
from flows.create.stills import Stills
from flows.create.timeline import Plan
from flows.settings import get_settings
from flows.steps.tools.ffmpeg import input_args, run_ffmpeg

CRF = 21
"""x264 quality of the export (lower is better)."""
PREVIEW_CRF = 30
PREVIEW_PRESET = "ultrafast"
PREVIEW_HEIGHT = 240
"""Largest frame height of the preview."""
PREVIEW_FPS = Fraction(15)
"""Highest frame rate of the preview."""
KEYFRAME_SECONDS = 2
"""Longest gap between key frames (seeking, streaming)."""
AUDIO_BITRATE = "128k"
COLOUR_TAGS = ["-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
"""How the output's colours are tagged (what the graph makes)."""
CHUNK_SECONDS = 60.0
"""A longer movie renders in windows of about this many seconds, one ffmpeg process each (memory
stays that of one window's graph, whatever the movie's length)."""
MUX_SHARE = 0.05
"""The joining step's weight in a chunked render's progress, relative to rendering the pictures."""

Progress = Callable[[float], Awaitable[None]]

__all__ = ["CRF", "PREVIEW_CRF", "PREVIEW_PRESET", "PREVIEW_HEIGHT", "PREVIEW_FPS", "Command", "Media", "Step",
           "build", "extract_frame", "preview_profile", "render_movie", "run"]


def preview_profile(profile: Profile) -> Profile:
    """The preview's profile: ``profile`` scaled to at most ``PREVIEW_HEIGHT`` lines (even
    sizes) at no more than ``PREVIEW_FPS``."""
    scale = min(1.0, PREVIEW_HEIGHT / profile.height)
    width = max(2, round(profile.width * scale / 2) * 2)
    height = max(2, round(profile.height * scale / 2) * 2)
    return replace(profile, name=f"{profile.name}-preview", width=width, height=height,
                   fps=min(profile.fps, PREVIEW_FPS))


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Step:
    """One ffmpeg process of a render: its ``args``, the seconds of movie it writes (its progress
    and timeout), its ``weight`` in the render's progress (None: ``duration``); ``parts``: chunk
    files joined, in order, into ``joined`` before it runs."""

    args: list[str]
    duration: float
    weight: float | None = None
    parts: tuple[Path, ...] = ()
    joined: Path | None = None

    def prepare(self) -> None:
        """Join the chunk files this step reads (MPEG-TS: joined end to end)."""
        if self.joined is None:
            return
        with open(self.joined, "wb") as out:
            for part in self.parts:
                with open(part, "rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
                part.unlink()


@dataclass(frozen=True)
class Command:
    """An ffmpeg render: its processes (``steps``, run in order), the output and the graph's warnings."""

    steps: tuple[Step, ...]
    output: Path
    duration: float
    warnings: tuple[str, ...] = ()


def _video_encode(rate: Fraction, preset: str | None, crf: int) -> list[str]:
    gop = max(1, round(rate * KEYFRAME_SECONDS))
    return ["-c:v", "libx264", "-preset", preset or get_settings().x264_preset, "-crf", str(crf),
            "-profile:v", "high", "-pix_fmt", "yuv420p", *COLOUR_TAGS, "-r", str(rate), "-fps_mode", "cfr",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]


def _sound(plan: Plan, media: Media, first_input: int, audio: bool) -> tuple[list[str], str, str]:
    """(inputs, graph fragment, label) of the movie's sound: the mix, or silence."""
    from flows.create.mix import mix_audio

    mixed = mix_audio(plan, media.files, media.probes, first_input) if audio else None
    if mixed is not None:
        return mixed
    samples = round(plan.duration * 48_000)
    return [], f"anullsrc=r=48000:cl=stereo,atrim=end_sample={samples}[silence]", "[silence]"


def _script(path: Path, chains: list[str]) -> Path:
    path.write_text(";\n".join(chains), encoding="utf-8")
    return path


def build(plan: Plan, media: Media, profile: Profile, dest: Path, work_dir: Path, *, antialias: int = 4,
          preset: str | None = None, crf: int = CRF, audio: bool = True,
          chunk_seconds: float = CHUNK_SECONDS) -> Command:
    """The ffmpeg processes that render ``plan`` at ``profile`` into ``dest`` (an MP4): one, or
    for a movie longer than ``chunk_seconds`` one per window of about that length
    (``chunks.py``; H.264 in MPEG-TS, timestamps continuing) and a last one joining them to
    the sound. Pictures and texts are prepared (Pillow) into ``work_dir`` here; call it off the
    event loop."""
    work_dir.mkdir(parents=True, exist_ok=True)
    rate = Fraction(profile.fps)
    stills = Stills(work_dir, rate)
    windows = chunks.windows(plan, rate, chunk_seconds)
    length = num(float(frame_at(plan.duration, rate) / rate))
    container = ["-t", length, "-movflags", "+faststart", "-f", "mp4", str(dest)]
    audio_encode = ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", "48000", "-ac", "2"]
    if len(windows) == 1:
        scene = Scene(plan, media, profile, stills, antialias)
        video = scene.build()
        inputs, fragment, sound = _sound(plan, media, scene.input_count, audio)
        script = _script(work_dir / f"graph-{dest.stem}.txt", [*scene.chains, fragment])
        args = [*scene.inputs, *inputs, "-filter_complex_script", str(script), "-map", video, "-map", sound,
                *_video_encode(rate, preset, crf), *audio_encode, *container]
        return Command((Step(args, plan.duration),), dest, plan.duration, tuple(scene.warnings))
    steps, parts, warnings = [], [], []
    for index, (first, end) in enumerate(windows):
        scene = Scene(plan, media, profile, stills, antialias, window=(first, end))
        video = scene.build()
        script = _script(work_dir / f"graph-{dest.stem}-{index:03d}.txt", scene.chains)
        part = work_dir / f"{dest.stem}-{index:03d}.ts"
        parts.append(part)
        seconds = float((end - first) / rate)
        steps.append(Step([*scene.inputs, "-filter_complex_script", str(script), "-map", video,
                           *_video_encode(rate, preset, crf), "-an", "-frames:v", str(end - first),
                           "-output_ts_offset", num(float(first / rate)), "-f", "mpegts", str(part)], seconds))
        warnings += [w for w in scene.warnings if w not in warnings]
    joined = work_dir / f"{dest.stem}-video.ts"
    inputs, fragment, sound = _sound(plan, media, 1, audio)
    script = _script(work_dir / f"graph-{dest.stem}-sound.txt", [fragment])
    args = [*input_args(joined, "mpegts"), *inputs, "-filter_complex_script", str(script), "-map", "0:v",
            "-map", sound, "-c:v", "copy", *audio_encode, *container]
    steps.append(Step(args, plan.duration, plan.duration * MUX_SHARE, tuple(parts), joined))
    return Command(tuple(steps), dest, plan.duration, tuple(warnings))


async def run(command: Command, progress: Progress | None = None) -> Path:
    """Run a built command's steps in order (each with its timeout; ``progress(percent)`` over
    all of them, weighted by the seconds each makes)."""
    command.output.parent.mkdir(parents=True, exist_ok=True)
    weights = [step.duration if step.weight is None else step.weight for step in command.steps]
    total = sum(weights) or 1.0
    done = 0.0
    for step, weight in zip(command.steps, weights):
        await asyncio.to_thread(step.prepare)

        async def report(percent: float, before: float = done, share: float = weight) -> None:
            if progress is not None:
                await progress((before + share * percent / 100) / total * 100)

        await run_ffmpeg(step.args, duration=step.duration, progress=report)
        done += weight
    return command.output


async def render_movie(plan: Plan, media: Media, profile: Profile, dest: Path, work_dir: Path, *,
                       antialias: int = 4, preset: str | None = None, crf: int = CRF,
                       progress: Progress | None = None) -> Command:
    """Build (in a thread: Pillow) and run the render of ``plan`` into ``dest``."""
    command = await asyncio.to_thread(build, plan, media, profile, dest, work_dir, antialias=antialias,
                                      preset=preset, crf=crf)
    await run(command, progress)
    return command


async def extract_frame(movie: Path, time: float, duration: float, dest: Path, fps: Fraction) -> Path:
    """The frame of ``movie`` shown at ``time`` (clamped into the movie) as a JPEG (full-range
    BT.601, what JPEG decoders assume)."""
    last = max(0.0, duration - float(1 / fps))
    at = min(max(0.0, time), last)
    dest.parent.mkdir(parents=True, exist_ok=True)
    await run_ffmpeg([*input_args(movie, "mov", seek=at or None), "-frames:v", "1",
                      "-vf", "scale=out_color_matrix=bt601:out_range=pc,format=yuvj420p", "-q:v", "3",
                      "-update", "1", "-f", "image2", str(dest)])
    return dest

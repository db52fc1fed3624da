"""``video`` outputs: one file, mp4 (``+faststart``: the index before the media) or webm, in
h264, h265, vp9 or av1 (SVT-AV1, when this ffmpeg has it), 4:2:0 with even sides."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flows.errors import TaskError
from flows.outputs.config import VideoConfig
from flows.outputs.ladder import output_fps
from flows.settings import get_settings
from flows.steps.image.imaging import target_size
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe, probe_media
from flows.steps.video.scaling import scale_filter

DEFAULT_CRF = {"h264": 23, "h265": 28, "vp9": 32, "av1": 35}
AUDIO = {"aac": "aac", "mp3": "libmp3lame", "opus": "libopus", "vorbis": "libvorbis"}


@dataclass(frozen=True)
class VideoResult:
    """The file ``encode_output`` wrote (relative path) and what it holds."""

    files: list[str]
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float
    size: int
    """Bytes."""
    audio_codec: str | None
    encode_seconds: float


def video_size(source: tuple[int, int], config: VideoConfig) -> tuple[int, int]:
    """The output size: fit in width x height without upscaling (``fit``), or exactly the box
    (``fill``, centre-cropped); sides rounded down to even numbers."""
    if config.fit == "fill":
        w, h = config.width, config.height
    else:
        w, h = target_size(source, config.width, config.height, crop=False, upscale=False)
    return max(2, w - w % 2), max(2, h - h % 2)


def video_codec_args(config: VideoConfig, fps: float) -> list[str]:
    """Encoder options of ``config.codec``: quality (crf, default per codec) or average
    bitrate (h264/h265: peaks capped at 1.5x), a key frame at least every 10 s."""
    crf = config.crf if config.crf is not None else DEFAULT_CRF[config.codec]
    rate = config.video_bitrate
    gop = ["-g", str(max(1, round(fps * 10)))]
    preset = get_settings().x264_preset
    if config.codec == "h264":
        quality = (["-b:v", f"{rate}k", "-maxrate", f"{int(rate * 1.5)}k", "-bufsize", f"{2 * rate}k"] if rate
                   else ["-crf", str(crf)])
        return ["-c:v", "libx264", "-preset", preset, "-profile:v", "high", *quality, *gop]
    if config.codec == "h265":
        quality = (["-b:v", f"{rate}k", "-maxrate", f"{int(rate * 1.5)}k", "-bufsize", f"{2 * rate}k"] if rate
                   else ["-crf", str(crf)])
        tag = ["-tag:v", "hvc1"] if config.container == "mp4" else []
        return ["-c:v", "libx265", "-preset", preset, *quality, *gop, *tag, "-x265-params", "log-level=error"]
    if config.codec == "vp9":
        quality = ["-b:v", f"{rate}k"] if rate else ["-crf", str(crf), "-b:v", "0"]
        return ["-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1", *quality, *gop]
    quality = ["-b:v", f"{rate}k"] if rate else ["-crf", str(crf)]
    return ["-c:v", "libsvtav1", "-preset", "8", *quality, *gop]


def video_command(
    src: Path, probe: MediaProbe, config: VideoConfig, dest: Path
) -> tuple[list[str], tuple[int, int], float]:
    """ffmpeg arguments writing ``dest``; also returns the output size and frame rate."""
    if probe.video is None:
        raise TaskError("the input has no video stream: a video output needs one")
    size = video_size(probe.video.upright_size, config)
    fps = config.fps or output_fps(probe.video.frame_rate)
    filters = [scale_filter(size, config.fit == "fill")]
    if config.fps or (probe.video.frame_rate and probe.video.frame_rate > fps + 0.01):
        filters.insert(0, f"fps={fps:g}")
    filters.append("format=yuv420p")
    audio: list[str] = ["-an"]
    if probe.audio and config.audio_codec != "none":
        rate = 48000 if config.audio_codec == "opus" else (
            probe.audio.sample_rate if probe.audio.sample_rate in (32000, 44100, 48000) else 48000)
        audio = ["-map", "0:a:0", "-c:a", AUDIO[config.audio_codec], "-b:a", f"{config.audio_bitrate}k",
                 "-ac", str(min(max(probe.audio.channels, 1), 2)), "-ar", str(rate)]
    muxer = ["-f", "mp4", "-movflags", "+faststart"] if config.container == "mp4" else ["-f", "webm"]
    args = [*input_args(src, probe.format_name), "-map", "0:v:0", "-vf", ",".join(filters),
            *video_codec_args(config, fps), "-pix_fmt", "yuv420p", *audio, "-sn", "-dn",
            "-map_metadata", "-1", *muxer, str(dest)]
    return args, size, fps


@step("video", run_name=lambda parameters: "video {0.container} {0.codec}".format(parameters["config"]))
async def encode_output(
    src: Path, probe: MediaProbe, config: VideoConfig, out_dir: Path, *, name: str = "video",
    progress: ProgressCallback | None = None,
) -> VideoResult:
    """Encode ``src`` (probed) as ``config`` says to ``out_dir/<name>.<container>``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{name}.{config.container}"
    args, size, fps = video_command(src, probe, config, dest)
    started = time.monotonic()
    await run_ffmpeg(args, duration=probe.duration, progress=progress)
    seconds = time.monotonic() - started
    made = await probe_media(dest)
    result = VideoResult(
        files=[dest.name], container=config.container, codec=config.codec, width=size[0], height=size[1],
        fps=round(fps, 3), duration=round(made.duration, 3), size=dest.stat().st_size,
        audio_codec=made.audio.codec if made.audio else None, encode_seconds=round(seconds, 3),
    )
    step_log("%s: %s %dx%d %.3g fps, %.2f s, %d bytes in %.1f s", dest.name, config.codec, *size, fps,
             result.duration, result.size, seconds)
    return result

"""Encoding settings shared by ``video.convert`` and ``video.reverse``: H.264 video, the
chosen audio codec, and a container that fits them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.settings import get_settings
from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe
from flows.steps.video.scaling import scale_filter

AUDIO_ENCODERS = {"mp2": "mp2", "mp3": "libmp3lame", "aac": "aac", "wmav1": "wmav1", "wmav2": "wmav2"}


@dataclass(frozen=True)
class Container:
    muxer: str
    extension: str
    options: tuple[str, ...] = ()


MP4 = Container("mp4", "mp4", ("-movflags", "+faststart"))
ASF = Container("asf", "asf")


@dataclass(frozen=True)
class Encoding:
    """What the output is encoded with (bitrates in kbps, sample rate in Hz)."""

    video_bitrate: int | None = None
    crf: int = 23
    gop: int = 250
    audio_codec: str = "aac"
    audio_bitrate: int = 128
    sample_rate: int = 44100

    @property
    def container(self) -> Container:
        """MP4 for AAC, MP3 and MP2 audio; ASF for Windows Media Audio."""
        return ASF if self.audio_codec.startswith("wma") else MP4

    def video_args(self) -> list[str]:
        """H.264 (the ``x264_preset`` setting) at constant quality ``crf``, its rate capped at ``video_bitrate`` when set,
        a key frame at least every ``gop`` frames."""
        cap = (["-maxrate", f"{self.video_bitrate}k", "-bufsize", f"{2 * self.video_bitrate}k"]
               if self.video_bitrate else [])
        return ["-c:v", "libx264", "-preset", get_settings().x264_preset, "-crf", str(self.crf), *cap,
                "-g", str(self.gop), "-pix_fmt", "yuv420p"]

    def audio_args(self, channels: int) -> list[str]:
        """The audio codec at ``audio_bitrate`` and ``sample_rate``, mono or stereo."""
        return ["-c:a", AUDIO_ENCODERS[self.audio_codec], "-b:a", f"{self.audio_bitrate}k",
                "-ar", str(self.sample_rate), "-ac", str(min(max(channels, 1), 2))]

    def muxer_args(self) -> list[str]:
        return ["-f", self.container.muxer, *self.container.options]


def transcode_args(
    src: Path, probe: MediaProbe, dest: Path, size: tuple[int, int], *, crop: bool, encoding: Encoding
) -> list[str]:
    """ffmpeg arguments converting ``src`` to ``dest``: its first video stream scaled to
    ``size`` and its first audio stream (if any), encoded with ``encoding``."""
    audio = ["-map", "0:a:0", *encoding.audio_args(probe.audio.channels)] if probe.audio else []
    return [*input_args(src, probe.format_name), "-map", "0:v:0", "-vf", scale_filter(size, crop),
            *encoding.video_args(), *audio, "-sn", "-dn", *encoding.muxer_args(), str(dest)]


@step("encode", run_name=lambda parameters: "encode {}x{} h264".format(*parameters["size"]))
async def encode_video(
    src: Path, probe: MediaProbe, dest: Path, size: tuple[int, int], *, crop: bool, encoding: Encoding,
    progress: ProgressCallback | None = None,
) -> None:
    """Transcode ``src`` to ``dest`` (``transcode_args``) with ffmpeg."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    await run_ffmpeg(transcode_args(src, probe, dest, size, crop=crop, encoding=encoding),
                     duration=probe.duration, progress=progress)
    step_log("%.2f s encoded at %dx%d, crf %d, %s audio, to %s (%d bytes)", probe.duration, *size, encoding.crf,
             encoding.audio_codec, dest.name, dest.stat().st_size)

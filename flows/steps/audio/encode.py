"""Encode (or copy) an audio stream to mp3, Ogg Vorbis or AAC with ffmpeg
(``audio.convert``, ``audio.tts``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.steps.step import step, step_log
from flows.steps.tools.ffmpeg import ProgressCallback, input_args, run_ffmpeg
from flows.steps.tools.probe import MediaProbe


@dataclass(frozen=True)
class AudioCodec:
    """An output codec: what ffprobe calls it, its encoder options and its file."""

    name: str
    encoder: tuple[str, ...]
    muxer: tuple[str, ...]
    extension: str
    content_type: str
    max_channels: int | None = None
    max_sample_rate: int | None = None


CODECS = {
    "mp3": AudioCodec("mp3", ("-c:a", "libmp3lame", "-q:a", "2"), ("-f", "mp3"), "mp3", "audio/mpeg",
                      max_channels=2, max_sample_rate=48000),
    "vorbis": AudioCodec("vorbis", ("-c:a", "libvorbis", "-q:a", "5"), ("-f", "ogg"), "ogg", "audio/ogg"),
    "aac": AudioCodec("aac", ("-c:a", "aac", "-b:a", "192k"), ("-f", "mp4", "-movflags", "+faststart"),
                      "m4a", "audio/mp4"),
}


def codec_options(codec: AudioCodec, probe: MediaProbe, *, copy: bool) -> list[str]:
    """ffmpeg output options for the first audio stream of ``probe`` in ``codec``."""
    if copy:
        return ["-c:a", "copy"]
    options = list(codec.encoder)
    audio = probe.audio
    if codec.max_channels and audio and audio.channels > codec.max_channels:
        options += ["-ac", str(codec.max_channels)]
    if codec.max_sample_rate and audio and audio.sample_rate > codec.max_sample_rate:
        options += ["-ar", str(codec.max_sample_rate)]
    return options


@step("encode", run_name="encode {codec}")
async def encode_audio(
    source: Path,
    probe: MediaProbe,
    dest_dir: Path,
    codec: str,
    *,
    duration: float,
    force: bool = True,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write the first audio stream of ``source`` in ``codec`` to ``dest_dir/output.EXT``.

    The stream is copied, not re-encoded, when it already has that codec and not ``force``.
    """
    target = CODECS[codec]
    copy = not force and probe.audio is not None and probe.audio.codec == target.name
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"output.{target.extension}"
    await run_ffmpeg(
        [*input_args(source, probe.format_name), "-map", "0:a:0", "-vn", "-sn", "-dn",
         "-map_metadata", "0", *codec_options(target, probe, copy=copy), *target.muxer, str(path)],
        duration=duration, progress=progress,
    )
    step_log("%s %s to %s (%d bytes)", "copied" if copy else "encoded", codec, path.name, path.stat().st_size)
    return path

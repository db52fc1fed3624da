"""Audio tasks: ``audio.info``, ``audio.convert``, ``audio.waveform``, ``audio.beats`` (seed
000, v2 task reference) and ``audio.tts`` (seed 001/002, v1 task reference)."""

from typing import Literal

from PIL import ImageColor
from pydantic import BaseModel, Field, field_validator, model_validator

from flows.errors import TaskError
from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, report_progress, task_flow
from flows.settings import get_settings
from flows.steps.audio.beats import find_beats
from flows.steps.audio.encode import CODECS, encode_audio
from flows.steps.audio.probe import probe_audio
from flows.steps.audio.tts import speak
from flows.steps.audio.waveform import draw_waveform
from flows.steps.fetch import fetch
from flows.steps.store import store
from flows.steps.tools.probe import probe_media

__all__ = [  # the task flows, then their parameter and result models
    "info", "convert", "waveform", "beats", "tts", "AudioInfoParams", "AudioInfo",
    "AudioConvertParams", "AudioConvertResult", "AudioWaveformParams", "AudioWaveformResult",
    "AudioBeatsParams", "AudioBeatsResult", "AudioTTSParams", "AudioTTSResult"
]


class AudioInfoParams(TaskParams):
    """Parameters of ``audio.info``."""

    url: str = Field(description="URL of the audio file to be scanned.")


class AudioInfo(BaseModel):
    """Output values of ``audio.info``."""

    duration: float = Field(description="Duration in seconds, rounded to 1/100th second.")
    content_type: str
    codec: str


class AudioConvertParams(TaskParams):
    """Parameters of ``audio.convert``."""

    url: str = Field(description="URL of the audio file to be converted.")
    codec: Literal["mp3", "vorbis", "aac"] = Field("mp3", description="Desired codec for the output file.")
    force: bool = Field(False, description="Re-encode even when the input already has that codec.")


class AudioConvertResult(BaseModel):
    """Output values and file of ``audio.convert``."""

    duration: float
    content_type: str
    output: str


class AudioWaveformParams(TaskParams):
    """Parameters of ``audio.waveform``."""

    url: str = Field(description="URL of the audio file to be scanned.")
    width: int = Field(1024, ge=1, le=10000, description="Image width, in pixels.")
    height: int = Field(60, ge=1, le=2000, description="Image height, in pixels.")
    vmargin: int = Field(0, ge=0, description="Vertical margin, in pixels (full scale reaches it).")
    fill: str = Field("#000000", description="Color of the wave-form.")
    background: str = Field("#FFFFFF", description="Color of the background.")
    start: float = Field(0.0, ge=0, description="Seconds to start from.")
    end: float | None = Field(None, gt=0, description="Generate the waveform up to this point, in seconds.")
    format: Literal["png", "jpeg"] = Field("jpeg", description="Output image format.")

    @field_validator("fill", "background")
    @classmethod
    def _color(cls, value: str) -> str:
        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a color (use #RRGGBB, #RGB or a CSS color name)") from None
        return value

    @model_validator(mode="after")
    def _ranges(self) -> "AudioWaveformParams":
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end:g}) must be after start ({self.start:g})")
        if 2 * self.vmargin >= self.height:
            raise ValueError(f"vmargin ({self.vmargin}) must be less than half the height ({self.height})")
        return self


class AudioWaveformResult(BaseModel):
    """Output values and file of ``audio.waveform``."""

    duration: float
    width: int
    height: int
    content_type: str
    output: str


class AudioBeatsParams(TaskParams):
    """Parameters of ``audio.beats``."""

    url: str = Field(description="URL of the audio file.")


class AudioBeatsResult(BaseModel):
    """Output values of ``audio.beats``."""

    beats: list[float] = Field(description="Timestamps of the detected beats, in seconds.")
    downbeats: list[float] = Field(description="Timestamps of the detected downbeats, in seconds.")
    duration: int = Field(description="The processed audio file duration in seconds.")


class AudioTTSParams(TaskParams):
    """Parameters of ``audio.tts``."""

    text: str = Field(description="Text to be transformed into audio via speech synthesis.")
    voice: Literal["neospeech:julie", "neospeech:paul"] = Field(
        "neospeech:julie", description="US English voice: julie (female) or paul (male)."
    )
    codec: Literal["mp3", "ogg"] = Field("mp3", description="Codec of the output file.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        limit = get_settings().tts_max_chars
        if len(value) > limit:
            raise ValueError(f"text is {len(value)} characters long; the limit is {limit}")
        return value

    @field_validator("voice", mode="before")
    @classmethod
    def _voice(cls, value: object) -> object:
        """Accept the spellings of the v1 documents ('neospoken: julie')."""
        if isinstance(value, str):
            return "".join(value.lower().split()).replace("neospoken:", "neospeech:")
        return value


class AudioTTSResult(BaseModel):
    """Output values and file of ``audio.tts``."""

    duration: float = Field(description="Duration in seconds, rounded to 1/100th second.")
    content_type: str
    output: str


@task_flow("audio.info")
async def info(params: AudioInfoParams, account: str = LOCAL_ACCOUNT) -> AudioInfo:
    """Return duration and codec of an audio file."""
    audio = await probe_audio(await fetch(params.url, current_run().work_dir))
    return AudioInfo(duration=round(audio.duration, 2), content_type=audio.content_type, codec=audio.codec)


@task_flow("audio.convert")
async def convert(params: AudioConvertParams, account: str = LOCAL_ACCOUNT) -> AudioConvertResult:
    """Transcode audio file (mp3, vorbis, aac), and return audio duration."""
    work_dir = current_run().work_dir
    source = await fetch(params.url, work_dir / "in")
    audio = await probe_audio(source)
    path = await encode_audio(source, audio.probe, work_dir / "out", params.codec,
                              duration=audio.duration, force=params.force, progress=report_progress)
    converted = await probe_media(path)
    return AudioConvertResult(duration=round(converted.duration, 2), content_type=CODECS[params.codec].content_type,
                         output=await store(path, "output"))


@task_flow("audio.waveform")
async def waveform(params: AudioWaveformParams, account: str = LOCAL_ACCOUNT) -> AudioWaveformResult:
    """Create a waveform image from an audio file."""
    work_dir = current_run().work_dir
    source = await fetch(params.url, work_dir / "in")
    audio = await probe_audio(source)
    path, content_type = await draw_waveform(
        source, audio, work_dir / "out", width=params.width, height=params.height, vmargin=params.vmargin,
        fill=params.fill, background=params.background, start=params.start, end=params.end,
        format=params.format, progress=report_progress,
    )
    return AudioWaveformResult(duration=round(audio.duration, 2), width=params.width, height=params.height,
                          content_type=content_type, output=await store(path, "output"))


@task_flow("audio.beats")
async def beats(params: AudioBeatsParams, account: str = LOCAL_ACCOUNT) -> AudioBeatsResult:
    """Find beats in an audio file."""
    source = await fetch(params.url, current_run().work_dir)
    audio = await probe_audio(source)
    found = await find_beats(source, audio.probe, progress=report_progress)
    return AudioBeatsResult(beats=found.beats, downbeats=found.downbeats, duration=round(audio.duration))


@task_flow("audio.tts")
async def tts(params: AudioTTSParams, account: str = LOCAL_ACCOUNT) -> AudioTTSResult:
    """Create audio voice-over file using Text-to-Speech (US English, male/female voices)."""
    work_dir = current_run().work_dir
    speech = await speak(params.text, params.voice, work_dir / "speech")
    probe = await probe_media(speech)
    if probe.duration <= 0:
        raise TaskError("the text produced no speech")
    codec = "vorbis" if params.codec == "ogg" else "mp3"
    path = await encode_audio(speech, probe, work_dir / "out", codec, duration=probe.duration,
                              progress=report_progress)
    spoken = await probe_media(path)
    return AudioTTSResult(duration=round(spoken.duration, 2), content_type=CODECS[codec].content_type,
                     output=await store(path, "output"))


# Names from before the family prefix, kept for existing pipelines.
BeatsParams = AudioBeatsParams
BeatsResult = AudioBeatsResult
ConvertParams = AudioConvertParams
ConvertResult = AudioConvertResult
InfoParams = AudioInfoParams
TTSParams = AudioTTSParams
TTSResult = AudioTTSResult
WaveformParams = AudioWaveformParams
WaveformResult = AudioWaveformResult

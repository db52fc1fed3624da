"""``type_specific_config`` of each VimQu output type, as pydantic models with defaults.

``parse_output_config(type, data)`` validates one; on bad values it raises
``OutputConfigError`` whose ``errors`` maps each field (dotted: ``variants.1.height``) to
messages that name it, the shape of seed 003's 422 ``errors``. Imports only pydantic and
``flows.outputs.ladder`` (the API may use it).
"""

from __future__ import annotations

import functools
import subprocess
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flows.outputs.ladder import BUILTIN_LADDER, DEFAULT_VARIANTS, Variant

MAX_THUMBNAILS = 1000


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThumbnailConfig(_Config):
    """``thumbnail``: still frames, optionally tiled into a sprite sheet with a WebVTT index.

    Times: ``times`` (seconds), or one frame every ``interval`` seconds from 0, or ``count``
    frames at the centres of equal slices of the video; at most one of them. None: one frame
    at the middle, or with ``sprite`` one every ``duration / 100`` seconds (at least 1 s).
    """

    width: int | None = Field(None, ge=8, le=7680,
                              description="Width in pixels (default: from height, or the video's).")
    height: int | None = Field(None, ge=8, le=4320,
                               description="Height in pixels (default: from width, or the video's).")
    fit: Literal["fit", "fill"] = Field(
        "fit", description="fit: the frame fits inside width x height; fill: it fills the box, centre-cropped."
    )
    format: Literal["jpg", "png", "webp"] = Field("jpg", description="Image format.")
    quality: int = Field(85, ge=1, le=100, description="JPEG/WebP quality.")
    times: list[float] | None = Field(None, min_length=1, max_length=MAX_THUMBNAILS,
                                      description="Times of the frames, in seconds.")
    interval: float | None = Field(None, gt=0, le=86_400, description="Seconds between frames.")
    count: int | None = Field(None, ge=1, le=MAX_THUMBNAILS, description="Number of frames.")
    sprite: bool = Field(False, description="Also tile the frames into sprite.<format> with a sprite.vtt index.")
    sprite_columns: int = Field(10, ge=1, le=100, description="Tiles per row of the sprite sheet.")
    sprite_only: bool = Field(False, description="With sprite: write only the sprite sheet and its index.")

    @field_validator("format", mode="before")
    @classmethod
    def _jpeg(cls, value: Any) -> Any:
        return "jpg" if isinstance(value, str) and value.lower() == "jpeg" else value

    @field_validator("times")
    @classmethod
    def _times(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(t < 0 for t in value):
            raise ValueError("times must be 0 or more seconds")
        return value

    @model_validator(mode="after")
    def _check(self) -> "ThumbnailConfig":
        given = [name for name in ("times", "interval", "count") if getattr(self, name) is not None]
        if len(given) > 1:
            raise _field_error(given[1], f"give only one of times, interval and count (got {', '.join(given)})")
        if self.fit == "fill" and not (self.width and self.height):
            raise _field_error("fit", "fit 'fill' needs both width and height")
        if self.sprite_only and not self.sprite:
            raise _field_error("sprite_only", "sprite_only needs sprite: true")
        return self


VideoCodec = Literal["h264", "h265", "vp9", "av1"]
AudioCodec = Literal["aac", "mp3", "opus", "vorbis", "none"]
CONTAINER_CODECS = {"mp4": ("h264", "h265", "vp9", "av1"), "webm": ("vp9", "av1")}
CONTAINER_AUDIO = {"mp4": ("aac", "mp3", "opus", "none"), "webm": ("opus", "vorbis", "none")}
CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "vp9": (0, 63), "av1": (0, 63)}
VIDEO_ENCODERS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}


@functools.lru_cache
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders this machine's ffmpeg has (empty when ffmpeg is missing)."""
    try:
        out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in out.splitlines()
                     if len(line.split()) > 1 and line.startswith(" ") and line.split()[0][:1] in "VAS")


class VideoConfig(_Config):
    """``video``: one file. ``codec`` defaults to h264 (mp4) or vp9 (webm), ``audio_codec``
    to aac (mp4) or opus (webm). Quality: ``video_bitrate`` (kbps, average) or ``crf``
    (default: the codec's usual: h264 23, h265 28, vp9 32, av1 35), not both. The size fits in
    width x height (or fills it with ``fit: fill``), never above the input's, even sides."""

    container: Literal["mp4", "webm"] = Field("mp4", description="File format; mp4 gets +faststart.")
    codec: VideoCodec | None = Field(None, description="Video codec.")
    width: int | None = Field(None, ge=16, le=7680, description="Width in pixels.")
    height: int | None = Field(None, ge=16, le=4320, description="Height in pixels.")
    fit: Literal["fit", "fill"] = Field("fit", description="fit inside width x height, or fill it centre-cropped.")
    video_bitrate: int | None = Field(None, ge=50, le=200_000, description="Average video bitrate, in kbps.")
    crf: int | None = Field(None, ge=0, le=63, description="Constant quality (lower is better).")
    fps: float | None = Field(None, gt=0, le=120, description="Frame rate (default: the input's, at most 60).")
    audio_codec: AudioCodec | None = Field(None, description="Audio codec, or none to drop the audio.")
    audio_bitrate: int = Field(128, ge=16, le=512, description="Audio bitrate, in kbps.")

    @model_validator(mode="after")
    def _check(self) -> "VideoConfig":
        if self.codec is None:
            self.codec = "h264" if self.container == "mp4" else "vp9"
        if self.audio_codec is None:
            self.audio_codec = "aac" if self.container == "mp4" else "opus"
        if self.codec not in CONTAINER_CODECS[self.container]:
            raise _field_error("codec", f"codec {self.codec} cannot go in {self.container}; use one of "
                                        + ", ".join(CONTAINER_CODECS[self.container]))
        if self.audio_codec not in CONTAINER_AUDIO[self.container]:
            raise _field_error("audio_codec", f"audio_codec {self.audio_codec} cannot go in {self.container};"
                                              " use one of " + ", ".join(CONTAINER_AUDIO[self.container]))
        encoders = ffmpeg_encoders()
        if encoders and VIDEO_ENCODERS[self.codec] not in encoders:
            raise _field_error("codec", f"codec {self.codec} is not available: this ffmpeg has no"
                                        f" {VIDEO_ENCODERS[self.codec]} encoder")
        if self.video_bitrate is not None and self.crf is not None:
            raise _field_error("crf", "give video_bitrate or crf, not both")
        low, high = CRF_RANGE[self.codec]
        if self.crf is not None and not low <= self.crf <= high:
            raise _field_error("crf", f"crf of {self.codec} must be {low} to {high}")
        if self.fit == "fill" and not (self.width and self.height):
            raise _field_error("fit", "fit 'fill' needs both width and height")
        return self


class VariantConfig(_Config):
    """An explicit rung: its height (short side), bitrates in kbps and an optional name."""

    name: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    height: int = Field(ge=64, le=4320, description="Height (short side) in pixels.")
    width: int | None = Field(None, ge=64, le=7680, description="Width (default: from the input's aspect).")
    video_bitrate: int = Field(ge=50, le=100_000, description="Average video bitrate, in kbps.")
    audio_bitrate: int | None = Field(None, ge=16, le=512, description="Audio bitrate, in kbps.")

    def variant(self) -> Variant:
        return Variant(self.name or f"{self.height}p", self.height, self.video_bitrate, self.audio_bitrate,
                       self.width)


class StreamingConfig(_Config):
    """``hls`` and ``dash``: a ladder of H.264 rungs in CMAF segments. ``variants``: names of
    the built-in ladder (``flows.outputs.ladder``) and/or explicit {height, video_bitrate,
    audio_bitrate}; ``segment_duration`` in seconds (every rung has a key frame exactly at
    each multiple of it)."""

    variants: list[Union[str, VariantConfig]] = Field(
        default_factory=lambda: list(DEFAULT_VARIANTS), min_length=1, max_length=10,
        description="Rungs: built-in names (240p ... 2160p) or {height, video_bitrate, audio_bitrate}.",
    )
    segment_duration: float = Field(4.0, ge=1, le=20, description="Target segment duration, in seconds.")
    codec: Literal["h264"] = Field("h264", description="Video codec of every rung.")
    audio_bitrate: int | None = Field(None, ge=16, le=512,
                                      description="Audio bitrate of every rung, in kbps (default: the ladder's).")

    @field_validator("variants", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str) and item not in BUILTIN_LADDER:
                    raise _field_error(f"variants.{i}", f"variants.{i}: unknown variant {item!r}; the built-in"
                                                        " ladder has " + ", ".join(BUILTIN_LADDER))
        return value

    @model_validator(mode="after")
    def _unique(self) -> "StreamingConfig":
        seen: dict[int, int] = {}
        for i, v in enumerate(self.resolved_variants()):
            if v.height in seen:
                raise _field_error(f"variants.{i}", f"variants.{i} has the height {v.height} of"
                                                    f" variants.{seen[v.height]}")
            seen[v.height] = i
        return self

    def resolved_variants(self) -> list[Variant]:
        return [BUILTIN_LADDER[v] if isinstance(v, str) else v.variant() for v in self.variants]


OUTPUT_CONFIGS: dict[str, type[BaseModel]] = {
    "thumbnail": ThumbnailConfig,
    "video": VideoConfig,
    "hls": StreamingConfig,
    "dash": StreamingConfig,
    "mpeg_dash": StreamingConfig,  # seed 003 names the type both ways
}


class _FieldError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


class OutputConfigError(ValueError):
    """An invalid ``type_specific_config``: ``errors`` maps dotted field names to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(m for messages in errors.values() for m in messages))


def _message(field: str, error: dict) -> str:
    ctx = error.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _FieldError):
        return str(inner)
    text = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{field} is not a field of this output type"
    if error["type"] == "missing":
        return f"{field} is required"
    leaf = field.rsplit(".", 1)[-1]
    return text if text.startswith(leaf) else f"{field}: {text}"


def parse_output_config(output_type: str, data: dict | None) -> BaseModel:
    """The validated config of an output of ``output_type``; OutputConfigError naming the
    fields otherwise (an unknown type is an error on ``type``)."""
    model = OUTPUT_CONFIGS.get(output_type)
    if model is None:
        raise OutputConfigError({"type": [f"type must be one of thumbnail, video, hls, dash, not {output_type!r}"]})
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            loc = error["loc"]
            if "str" in loc and isinstance(error.get("input"), dict):
                continue  # a dict variant: only its VariantConfig errors say what is wrong
            if "VariantConfig" in loc and error["type"] == "model_type":
                continue  # not a dict: the str branch's error says it
            inner = (error.get("ctx") or {}).get("error")
            if isinstance(inner, _FieldError):
                field = inner.field
            else:
                # union members add their type names to the location: keep the field path only
                field = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p[:1].isupper()
                                                                      or p in ("str", "VariantConfig")))
            field = field or "type_specific_config"
            message = _message(field, error)
            if message not in errors.setdefault(field, []):
                errors[field].append(message)
        raise OutputConfigError(errors) from None

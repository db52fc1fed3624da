"""Video tasks: ``video.info``, ``video.convert``, ``video.thumb``, ``video.strip`` and
``video.reverse`` (seed 000, v2 task reference; v1 defaults in the registry)."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from flows.errors import TaskError
from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, report_progress, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.image.imaging import content_type as image_content_type
from flows.steps.store import store
from flows.steps.tools.probe import MediaProbe, VideoStream, content_type, probe_input, probe_media
from flows.steps.video.encode import Encoding, encode_video
from flows.steps.video.frames import film_strip, grid, strip_times, thumbnail_frame
from flows.steps.video.reverse import reverse_video
from flows.steps.video.scaling import output_size

__all__ = [  # the task flows, then their parameter and result models
    "info", "convert", "reverse", "thumb", "strip", "VideoInfoParams", "VideoInfo", "EncodedVideo",
    "VideoEncodeParams", "VideoConvertParams", "VideoReverseParams", "VideoThumbParams",
    "VideoThumbResult", "VideoStripParams", "VideoStripResult"
]

AudioCodec = Literal["mp2", "mp3", "aac", "wmav1", "wmav2"]
SampleRate = Literal[22050, 44100, 48000]
ImageFormat = Literal["jpeg", "png"]


def _width(what: str):
    return Field(None, ge=1, le=8192, description=f"Width of the {what}, in pixels.")


def _height(what: str):
    return Field(None, ge=1, le=8192, description=f"Height of the {what}, in pixels.")


class VideoInfoParams(TaskParams):
    """Parameters of ``video.info``."""

    url: str = Field(description="URL of the video file to be scanned.")


class VideoInfo(BaseModel):
    """Output values of ``video.info``; the video values are null for a file without video."""

    content_type: str
    width: int | None
    height: int | None
    duration: float
    frame_rate: float | None
    alpha: bool
    rotation: float
    audio_codec: str | None
    video_codec: str | None


class EncodedVideo(VideoInfo):
    """``video.info`` values of an output video, the size of the input and the file's URL."""

    original_width: int
    original_height: int
    output: str


class VideoEncodeParams(TaskParams):
    """Parameters ``video.convert`` and ``video.reverse`` share."""

    url: str = Field(description="URL of the source video.")
    width: int | None = _width("output video (default: from height, or the source's)")
    height: int | None = _height("output video (default: from width, or the source's)")
    crop: bool = Field(False, description="Fill the width x height box, centre-cropped, instead of fitting in it.")
    audio_codec: AudioCodec = Field("aac", description="Audio codec (the container follows: MP4, or ASF for WMA).")
    video_codec: Literal["h264"] = Field("h264", description="Video codec.")
    audio_bitrate: int = Field(128, ge=8, le=512, description="Audio bitrate, in kbps.")
    sample_rate: SampleRate = Field(44100, description="Audio sample rate, in Hz.")
    crf: int = Field(23, ge=0, le=51, description="Constant rate factor (video quality; lower is better).")
    gop: int = Field(250, ge=1, le=10_000, description="Group of pictures size: frames between key frames, at most.")


class VideoConvertParams(VideoEncodeParams):
    """Parameters of ``video.convert``."""

    video_bitrate: int = Field(3000, ge=16, le=100_000, description="Maximum video bitrate, in kbps.")


class VideoReverseParams(VideoEncodeParams):
    """Parameters of ``video.reverse``."""

    video_bitrate: int | None = Field(
        None, ge=16, le=100_000, description="Maximum video bitrate, in kbps (default: the source's)."
    )


class VideoThumbParams(TaskParams):
    """Parameters of ``video.thumb``."""

    url: str = Field(description="URL of the source video.")
    width: int | None = _width("image (default: the video's)")
    height: int | None = _height("image (default: the video's)")
    crop: bool = Field(False, description="False: the frame fits the image; true: it fills it, centre-cropped.")
    time: float = Field(0.0, ge=0, description="Time of the frame, in seconds (past the end: the last frame).")
    format: ImageFormat = Field("jpeg", description="Output image format.")
    poster: bool = Field(False, description="Add a play icon in the centre.")
    quality: int = Field(75, ge=1, le=95, description="JPEG quality, 1 to 95.")


class VideoThumbResult(BaseModel):
    """Output values and file of ``video.thumb``."""

    width: int
    height: int
    original_width: int
    original_height: int
    duration: float
    content_type: str
    output: str


class VideoStripParams(TaskParams):
    """Parameters of ``video.strip``."""

    url: str = Field(description="URL of the source video.")
    width: int | None = _width("each frame (default: from height, or the video's)")
    height: int | None = _height("each frame (default: from width, or the video's)")
    crop: bool = Field(False, description="False: frames fit each section; true: they fill it, centre-cropped.")
    wrap: int | None = Field(None, ge=1, description="Frames per row (default: all on one row).")
    start: float = Field(0.0, ge=0, description="Time of the first frame, in seconds.")
    end: float | None = Field(None, ge=0, description="Time of the last frame, in seconds (default: the last frame).")
    count: int = Field(10, ge=1, le=100, description="Number of frames, at equal intervals from start to end.")
    format: ImageFormat = Field("jpeg", description="Output image format.")


class VideoStripResult(BaseModel):
    """Output values and file of ``video.strip``."""

    count: int
    width: int
    height: int
    original_width: int
    original_height: int
    duration: float
    frame_rate: float
    content_type: str
    output: str


def video_info(probe: MediaProbe) -> dict:
    """The ``video.info`` values of a probed file."""
    video, audio = probe.video, probe.audio
    return {
        "content_type": content_type(probe),
        "width": video.width if video else None,
        "height": video.height if video else None,
        "duration": round(probe.duration, 3),
        "frame_rate": video.frame_rate if video else None,
        "alpha": bool(video and video.alpha),
        "rotation": video.rotation if video else 0.0,
        "audio_codec": audio.codec if audio else None,
        "video_codec": video.codec if video else None,
    }


async def _open_video(url: str) -> tuple[Path, MediaProbe, VideoStream]:
    """Fetch and probe the input; TaskError unless it has a video stream."""
    source = await fetch(url, current_run().work_dir / "in")
    probe = await probe_input(source)
    if probe.video is None:
        raise TaskError("the input has no video stream")
    return source, probe, probe.video


def _encoding(params: VideoEncodeParams, video_bitrate: int | None) -> Encoding:
    return Encoding(
        video_bitrate=video_bitrate, crf=params.crf, gop=params.gop, audio_codec=params.audio_codec,
        audio_bitrate=params.audio_bitrate, sample_rate=params.sample_rate,
    )


async def _encoded(dest: Path, video: VideoStream) -> EncodedVideo:
    """Probe and store an output video."""
    values = video_info(await probe_media(dest))
    return EncodedVideo(
        **values, original_width=video.width, original_height=video.height, output=await store(dest, "output")
    )


def _video_kbps(probe: MediaProbe) -> int | None:
    """The source's video bitrate in kbps (the file's less its audio when not given)."""
    rate = probe.video.bit_rate if probe.video else None
    if rate is None and probe.bit_rate:
        rate = probe.bit_rate - ((probe.audio and probe.audio.bit_rate) or 0)
    return rate // 1000 if rate and rate >= 16_000 else None


def _check_pixels(width: int, height: int) -> None:
    limit = get_settings().max_image_pixels
    if width * height > limit:
        raise TaskError(f"the image would be {width}×{height} = {width * height} pixels, over the limit of {limit}")


@task_flow("video.info")
async def info(params: VideoInfoParams, account: str = LOCAL_ACCOUNT) -> VideoInfo:
    """Return video file information."""
    source = await fetch(params.url, current_run().work_dir / "in")
    return VideoInfo(**video_info(await probe_input(source)))


@task_flow("video.convert")
async def convert(params: VideoConvertParams, account: str = LOCAL_ACCOUNT) -> EncodedVideo:
    """Create a transcoded video file with custom dimensions, and return its video.info values."""
    source, probe, video = await _open_video(params.url)
    size = output_size(video.upright_size, params.width, params.height, params.crop, even=True)
    encoding = _encoding(params, params.video_bitrate)
    dest = current_run().work_dir / "out" / f"output.{encoding.container.extension}"
    await encode_video(source, probe, dest, size, crop=params.crop, encoding=encoding, progress=report_progress)
    return await _encoded(dest, video)


@task_flow("video.reverse")
async def reverse(params: VideoReverseParams, account: str = LOCAL_ACCOUNT) -> EncodedVideo:
    """Create a reversed video file (audio too) with custom dimensions, and return its video.info values."""
    source, probe, video = await _open_video(params.url)
    size = output_size(video.upright_size, params.width, params.height, params.crop, even=True)
    encoding = _encoding(params, params.video_bitrate or _video_kbps(probe))
    dest = current_run().work_dir / "out" / f"output.{encoding.container.extension}"
    await reverse_video(source, probe, dest, size, crop=params.crop, encoding=encoding, progress=report_progress)
    return await _encoded(dest, video)


@task_flow("video.thumb")
async def thumb(params: VideoThumbParams, account: str = LOCAL_ACCOUNT) -> VideoThumbResult:
    """Create an image of custom dimensions from the frame shown at a given time."""
    source, probe, video = await _open_video(params.url)
    size = output_size(video.upright_size, params.width, params.height, params.crop)
    _check_pixels(*size)
    path = await thumbnail_frame(
        source, probe, params.time, size, current_run().work_dir / "out", crop=params.crop,
        alpha=video.alpha and params.format == "png", format=params.format, quality=params.quality,
        poster=params.poster,
    )
    return VideoThumbResult(
        width=size[0], height=size[1], original_width=video.width, original_height=video.height,
        duration=round(probe.duration, 3), content_type=image_content_type(params.format),
        output=await store(path, "output"),
    )


@task_flow("video.strip")
async def strip(params: VideoStripParams, account: str = LOCAL_ACCOUNT) -> VideoStripResult:
    """Create a film strip image of frames at equal intervals, with the source's video.info values."""
    source, probe, video = await _open_video(params.url)
    size = output_size(video.upright_size, params.width, params.height, params.crop)
    times = strip_times(probe, params.start, params.end, params.count)
    columns, rows = grid(len(times), params.wrap)
    _check_pixels(size[0] * columns, size[1] * rows)
    path, (width, height) = await film_strip(
        source, probe, times, size, current_run().work_dir / "out", crop=params.crop, wrap=params.wrap,
        format=params.format, progress=report_progress,
    )
    return VideoStripResult(
        count=len(times), width=width, height=height,
        original_width=video.width, original_height=video.height, duration=round(probe.duration, 3),
        frame_rate=video.frame_rate, content_type=image_content_type(params.format),
        output=await store(path, "output"),
    )


# Names from before the family prefix, kept for existing pipelines.
ConvertParams = VideoConvertParams
ReverseParams = VideoReverseParams
StripParams = VideoStripParams
StripResult = VideoStripResult

"""Image tasks (seed 000, v2 task reference; seed 002 for the v1-only ones):
``image.info``, ``image.thumb``, ``image.gif``, ``image.strip``, ``image.face``,
``image.saliency`` and ``image.smartcrop``."""

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from flows.errors import TaskError
from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, report_progress, task_flow
from flows.settings import get_settings
from flows.steps.fetch import fetch
from flows.steps.image.analysis import AnalysisImage, decode
from flows.steps.image.faces import find_faces
from flows.steps.image.gif import MAX_FRAMES, animate
from flows.steps.image.imaging import thumbnail
from flows.steps.image.probe import about_source, probe, to_image_info
from flows.steps.image.saliency import find_salient_points
from flows.steps.image.smartcrop import find_crop_boxes
from flows.steps.image.strip import tile_images
from flows.steps.store import store

__all__ = [  # the task flows, then their parameter and result models
    "info", "thumb", "gif", "strip", "face", "saliency", "smartcrop", "ImageInfoParams",
    "ImageThumbParams", "ImageGifParams", "ImageStripParams", "ImageFaceParams",
    "ImageSaliencyParams", "ImageSmartcropParams", "ImageInfo", "ImageThumbResult",
    "ImageGifResult", "ImageStripResult", "Region", "SalientPoint", "ImageFaceResult",
    "ImageSaliencyResult", "ImageSmartcropResult"
]

MAX_STRIP_IMAGES = 1000


def _as_list(value: object) -> object:
    """One URL given as a plain string stands for a list of one."""
    return [value] if isinstance(value, str) else value


Size = Annotated[int | None, Field(ge=1, le=10000)]
Fraction = Annotated[float, Field(ge=0, le=1)]


# --- parameters ------------------------------------------------------------------------------


class ImageInfoParams(TaskParams):
    """Parameters of ``image.info``."""

    url: str = Field(description="URL of the image file to be scanned.")


class ImageThumbParams(TaskParams):
    """Parameters of ``image.thumb``."""

    url: str = Field(description="URL of the source image.")
    width: Size = Field(None, description="Desired thumbnail width, in pixels.")
    height: Size = Field(None, description="Desired thumbnail height, in pixels.")
    crop: bool = Field(False, description="True: fill the box (centre crop); false: fit inside it.")
    rotation: Literal[0, 90, 180, 270] = Field(0, description="Counter-clockwise rotation, degrees.")
    poster: bool = Field(False, description="Add a play icon in the centre.")
    format: Literal["jpeg", "gif", "png", "webp"] = Field("jpeg", description="Output format.")


class ImageGifParams(TaskParams):
    """Parameters of ``image.gif``."""

    images: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        min_length=1, max_length=MAX_FRAMES, description="URLs of the images, in display order."
    )
    loop: int = Field(0, ge=-1, le=65535, description="Loops: 0 forever, -1 no loop (play once), n the GIF loop count.")
    frame_duration: float = Field(
        0.1, ge=0.01, le=655.35, description="Seconds each image shows, rounded to 1/100 s."
    )
    width: Size = Field(None, description="Width of the GIF; empty: from the first image.")
    height: Size = Field(None, description="Height of the GIF; empty: from the first image.")


class ImageStripParams(TaskParams):
    """Parameters of ``image.strip``."""

    urls: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        min_length=1, max_length=MAX_STRIP_IMAGES, description="URLs of the source images, in order."
    )
    width: Size = Field(None, description="Width of each frame of the strip, in pixels.")
    height: Size = Field(None, description="Height of each frame of the strip, in pixels.")
    crop: bool = Field(False, description="True: frames fill their section (centres aligned); false: fit in it.")
    wrap: int | None = Field(None, ge=1, description="Frames on a row before a new row starts; empty: one row.")
    format: Literal["jpeg", "png"] = Field("jpeg", description="Output image file format.")


class ImageFaceParams(TaskParams):
    """Parameters of ``image.face``."""

    url: str = Field(description="URL of the analyzed image.")


class ImageSaliencyParams(TaskParams):
    """Parameters of ``image.saliency``."""

    url: str = Field(description="URL of the analyzed image.")
    points_number: int = Field(10, ge=1, le=100, description="Most salient points returned, at most.")


class ImageSmartcropParams(TaskParams):
    """Parameters of ``image.smartcrop``."""

    url: str = Field(description="URL of the image file to be scanned.")
    aspect_ratio: float = Field(16 / 9, gt=0.01, lt=100, description="Width / height of the boxes.")
    boxes_number: int = Field(10, ge=1, le=100, description="Boxes returned, at most.")
    step_ratio: float = Field(
        0.03, gt=0, le=1, description="Step between tried boxes, as a fraction of the image width/height."
    )
    diag_ratio: float = Field(0.3, gt=0, le=1, description="Box diagonal, as a fraction of the image diagonal.")
    reverse: bool = Field(False, description="True: least interesting boxes first.")
    faces: bool = Field(True, description="Detected faces weigh into the choice (beyond v1).")
    focal_point: tuple[Fraction, Fraction] | None = Field(
        None,
        description="[x, y] as fractions of width and height: boxes nearest to it first, instead of"
        " entropy and faces (beyond v1).",
    )


# --- results ---------------------------------------------------------------------------------


class ImageInfo(BaseModel):
    """Output values of ``image.info``."""

    content_type: str
    type: str = "image"
    width: int
    height: int
    alpha: bool
    exif_orientation: int | None = None
    rotation: float | None = None
    date_time: str | None = None
    flash: bool | None = None
    focal_length: float | None = None
    iso_speed: float | None = None
    exposure_time: float | None = None


class ImageThumbResult(BaseModel):
    """Output values and file of ``image.thumb``."""

    width: int
    height: int
    original_width: int
    original_height: int
    output: str


class ImageGifResult(BaseModel):
    """Output file (and size) of ``image.gif``."""

    width: int
    height: int
    output: str


class ImageStripResult(BaseModel):
    """Output values and file of ``image.strip``."""

    count: int
    width: int
    height: int
    content_type: str
    output: str


class Region(BaseModel):
    """A box in pixels of the (upright) image and as fractions of its size."""

    x: int
    y: int
    width: int
    height: int
    relative_x: float
    relative_y: float
    relative_width: float
    relative_height: float


class Face(Region):
    """A detected face: ``type`` is ``frontal`` or ``profile``; ``confidence`` 0-1."""

    type: str
    confidence: float


class SalientPoint(BaseModel):
    """A salient point in pixels and fractions; ``weight`` relative to the strongest (1.0)."""

    x: int
    y: int
    relative_x: float
    relative_y: float
    weight: float


class CropBox(Region):
    """A smart crop box and its ``score`` (entropy 0-1, plus 1 per face it holds)."""

    score: float


class ImageFaceResult(BaseModel):
    """Output values of ``image.face``; ``width``/``height`` of the upright image."""

    width: int
    height: int
    faces: list[Face]


class ImageSaliencyResult(BaseModel):
    """Output values of ``image.saliency``; ``width``/``height`` of the upright image."""

    width: int
    height: int
    points: list[SalientPoint]


class ImageSmartcropResult(BaseModel):
    """Output values of ``image.smartcrop``; ``width``/``height`` of the upright image."""

    width: int
    height: int
    points: list[CropBox]


# --- flows -----------------------------------------------------------------------------------


@task_flow("image.info")
async def info(params: ImageInfoParams, account: str = LOCAL_ACCOUNT) -> ImageInfo:
    """Return image file information, EXIF included."""
    source = await fetch(params.url, current_run().work_dir)
    with about_source(params.url):
        return ImageInfo(**to_image_info(await probe(source)))


@task_flow("image.thumb")
async def thumb(params: ImageThumbParams, account: str = LOCAL_ACCOUNT) -> ImageThumbResult:
    """Create a thumbnail of custom dimensions and orientation from an image."""
    work_dir = current_run().work_dir
    source = await fetch(params.url, work_dir / "in")
    with about_source(params.url):
        await probe(source)
        path, values = await thumbnail(
            source, work_dir / "out", width=params.width, height=params.height, crop=params.crop,
            rotation=params.rotation, poster=params.poster, format=params.format,
        )
    return ImageThumbResult(**values, output=await store(path, "output"))


@task_flow("image.gif")
async def gif(params: ImageGifParams, account: str = LOCAL_ACCOUNT) -> ImageGifResult:
    """Create an animated GIF from a list of images."""
    work_dir = current_run().work_dir
    sources = await _fetch_all(params.images, work_dir / "in")
    path, values = await animate(
        sources, work_dir / "out", width=params.width, height=params.height, loop=params.loop,
        frame_duration=params.frame_duration,
    )
    return ImageGifResult(**values, output=await store(path, "output"))


@task_flow("image.strip")
async def strip(params: ImageStripParams, account: str = LOCAL_ACCOUNT) -> ImageStripResult:
    """Create an image strip of custom dimensions by concatenating images."""
    work_dir = current_run().work_dir
    sources = await _fetch_all(params.urls, work_dir / "in")
    path, values = await tile_images(
        sources, work_dir / "out", width=params.width, height=params.height, crop=params.crop,
        wrap=params.wrap, format=params.format,
    )
    return ImageStripResult(**values, output=await store(path, "output"))


@task_flow("image.face")
async def face(params: ImageFaceParams, account: str = LOCAL_ACCOUNT) -> ImageFaceResult:
    """Return the positions of detected faces, with type and confidence."""
    analysed = await _analysis_image(params.url)
    faces = await find_faces(analysed.image)
    return ImageFaceResult(
        width=analysed.original[0],
        height=analysed.original[1],
        faces=[
            Face(**analysed.region(f.x, f.y, f.width, f.height), type=f.type, confidence=f.confidence)
            for f in faces
        ],
    )


@task_flow("image.saliency")
async def saliency(params: ImageSaliencyParams, account: str = LOCAL_ACCOUNT) -> ImageSaliencyResult:
    """Return the most salient points of an image (spectral residual saliency)."""
    analysed = await _analysis_image(params.url)
    points = await find_salient_points(analysed.image, params.points_number)
    return ImageSaliencyResult(
        width=analysed.original[0],
        height=analysed.original[1],
        points=[SalientPoint(**analysed.point(x, y), weight=weight) for x, y, weight in points],
    )


@task_flow("image.smartcrop")
async def smartcrop(params: ImageSmartcropParams, account: str = LOCAL_ACCOUNT) -> ImageSmartcropResult:
    """Return the most interesting (entropy based, faces first) non-overlapping boxes of an aspect ratio."""
    analysed = await _analysis_image(params.url)
    faces = []
    if params.faces and params.focal_point is None:
        faces = await find_faces(analysed.image)
    boxes = await find_crop_boxes(
        analysed.image, aspect_ratio=params.aspect_ratio, boxes_number=params.boxes_number,
        step_ratio=params.step_ratio, diag_ratio=params.diag_ratio, reverse=params.reverse,
        faces=faces, focal_point=params.focal_point,
    )
    return ImageSmartcropResult(
        width=analysed.original[0],
        height=analysed.original[1],
        points=[CropBox(**analysed.region(b.x, b.y, b.width, b.height), score=b.score) for b in boxes],
    )


# --- shared steps of these flows -------------------------------------------------------------


async def _analysis_image(url: str) -> AnalysisImage:
    """Fetch ``url`` and decode it upright at analysis size; errors name the URL."""
    source = await fetch(url, current_run().work_dir)
    with about_source(url):
        return await decode(source)


async def _fetch_all(urls: list[str], dest_dir: Path) -> list[tuple[str, Path]]:
    """Download ``urls`` (the ``fetch_concurrency`` setting at a time) as ``(url, path)`` pairs,
    in order; the first failure cancels the rest. Fetching reports progress up to 50%."""
    limit = asyncio.Semaphore(get_settings().fetch_concurrency)
    done = 0

    async def one(url: str) -> tuple[str, Path]:
        nonlocal done
        async with limit:
            path = await fetch(url, dest_dir)
        done += 1
        await report_progress(50 * done / len(urls))
        return url, path

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(url)) for url in urls]
    except* TaskError as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


# Names from before the family prefix, kept for existing pipelines.
FaceParams = ImageFaceParams
FaceResult = ImageFaceResult
GifParams = ImageGifParams
GifResult = ImageGifResult
InfoParams = ImageInfoParams
SaliencyParams = ImageSaliencyParams
SaliencyResult = ImageSaliencyResult
SmartcropParams = ImageSmartcropParams
SmartcropResult = ImageSmartcropResult
StripParams = ImageStripParams
StripResult = ImageStripResult
ThumbParams = ImageThumbParams
ThumbResult = ImageThumbResult

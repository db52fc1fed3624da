"""Image tasks: ``image.info`` and ``image.thumb`` (seed 000, v2 task reference)."""

import asyncio
from typing import Literal

from pydantic import BaseModel, Field

from flows.params import TaskParams
from flows.runtime import LOCAL_ACCOUNT, current_run, task_flow
from flows.steps.fetch import fetch
from flows.steps.imaging import make_thumbnail
from flows.steps.probe import probe_image, to_image_info
from flows.steps.store import store


class InfoParams(TaskParams):
    """Parameters of ``image.info``."""

    url: str = Field(description="URL of the image file to be scanned.")


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


class ThumbParams(TaskParams):
    """Parameters of ``image.thumb``."""

    url: str = Field(description="URL of the source image.")
    width: int | None = Field(None, ge=1, le=10000, description="Desired thumbnail width, in pixels.")
    height: int | None = Field(None, ge=1, le=10000, description="Desired thumbnail height, in pixels.")
    crop: bool = Field(False, description="True: fill the box (centre crop); false: fit inside it.")
    rotation: Literal[0, 90, 180, 270] = Field(0, description="Counter-clockwise rotation, degrees.")
    poster: bool = Field(False, description="Add a play icon in the centre.")
    format: Literal["jpeg", "gif", "png", "webp"] = Field("jpeg", description="Output format.")


class ThumbResult(BaseModel):
    """Output values and file of ``image.thumb``."""

    width: int
    height: int
    original_width: int
    original_height: int
    output: str


@task_flow("image.info")
async def info(params: InfoParams, account: str = LOCAL_ACCOUNT) -> ImageInfo:
    """Return image file information, EXIF included."""
    source = await fetch(params.url, current_run().work_dir)
    probe = await asyncio.to_thread(probe_image, source)
    return ImageInfo(**to_image_info(probe))


@task_flow("image.thumb")
async def thumb(params: ThumbParams, account: str = LOCAL_ACCOUNT) -> ThumbResult:
    """Create a thumbnail of custom dimensions and orientation from an image."""
    work_dir = current_run().work_dir
    source = await fetch(params.url, work_dir / "in")
    path, values = await asyncio.to_thread(
        make_thumbnail,
        source,
        work_dir / "out",
        width=params.width,
        height=params.height,
        crop=params.crop,
        rotation=params.rotation,
        poster=params.poster,
        format=params.format,
    )
    return ThumbResult(**values, output=await store(path, "output"))

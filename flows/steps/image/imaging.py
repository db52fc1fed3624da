"""Decode, resize and encode images with Pillow; thumbnails (the ``image.thumb`` task)."""

from __future__ import annotations

import asyncio
import io
import math
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageCms, ImageDraw, ImageOps

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.image.probe import DECODE_ERRORS, about_source, open_image, upright_size
from flows.steps.step import step, step_log

# format parameter -> (Pillow format, file extension, save options)
_FORMATS = {
    "jpeg": ("JPEG", "jpg", {"quality": 85}),
    "png": ("PNG", "png", {}),
    "gif": ("GIF", "gif", {}),
    "webp": ("WEBP", "webp", {"quality": 85}),
}
_ROTATIONS = {
    0: None,
    90: Image.Transpose.ROTATE_90,  # Pillow's ROTATE_* turn counter-clockwise
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}
# Decode/resize at this many times the target before the final LANCZOS pass (as Image.thumbnail).
_REDUCING_GAP = 2.0
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def make_thumbnail(
    src: Path,
    dest_dir: Path,
    *,
    width: int | None,
    height: int | None,
    crop: bool = False,
    rotation: int = 0,
    poster: bool = False,
    format: str = "jpeg",
    max_pixels: int | None = None,
) -> tuple[Path, dict]:
    """Write ``dest_dir/output.<ext>`` from ``src`` and return it with the ``image.thumb`` values.

    The source is first turned upright from its EXIF orientation; ``original_width`` and
    ``original_height`` are that upright size. With both ``width`` and ``height`` the image
    fits inside the box (``crop=False``, aspect kept) or fills it exactly, centre-cropped
    (``crop=True``); with one of them it is scaled to it, aspect kept; with neither it keeps
    its size. Small images are scaled up to the requested size. ``rotation`` then turns the
    thumbnail counter-clockwise, and ``poster`` draws a play icon in its centre. The output
    is sRGB and carries no metadata; JPEG (and GIF) output has transparency flattened or
    reduced as the format requires.
    """
    check_format(format)
    if rotation not in _ROTATIONS:
        raise TaskError(f"rotation must be one of 0, 90, 180, 270, not {rotation!r}")
    thumb, original = render(src, width=width, height=height, crop=crop, max_pixels=max_pixels)
    if rotation:
        thumb = thumb.transpose(_ROTATIONS[rotation])
    if poster:
        draw_play_icon(thumb)
    dest = save_image(thumb, dest_dir, format)
    values = {
        "width": thumb.width,
        "height": thumb.height,
        "original_width": original[0],
        "original_height": original[1],
    }
    return dest, values


def _thumbnail_name(parameters: dict) -> str:
    options = parameters["options"]
    return f"thumbnail {options.get('width') or 'auto'}x{options.get('height') or 'auto'}"


@step("thumbnail", run_name=_thumbnail_name)
async def thumbnail(src: Path, dest_dir: Path, **options) -> tuple[Path, dict]:
    """``make_thumbnail`` as a step, off the event loop."""
    dest, values = await asyncio.to_thread(make_thumbnail, src, dest_dir, **options)
    step_log("%s: %dx%d from %dx%d (%d bytes)", dest.name, values["width"], values["height"],
             values["original_width"], values["original_height"], dest.stat().st_size)
    return dest, values


def check_format(format: str) -> None:
    """TaskError unless ``format`` is one of the output formats (jpeg, png, gif, webp)."""
    if format not in _FORMATS:
        raise TaskError(f"format must be one of {', '.join(_FORMATS)}, not {format!r}")


def content_type(format: str) -> str:
    """The MIME type of an output ``format``."""
    Image.init()  # Pillow registers its formats' MIME types lazily
    return Image.MIME[_FORMATS[format][0]]


def render(
    src: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    crop: bool = False,
    upscale: bool = True,
    max_pixels: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``src``'s first frame upright at the target size, as sRGB ``RGB``/``RGBA``.

    Sizing is ``make_thumbnail``'s (``upscale=False`` never enlarges); returns the image and
    the source's upright size. The pixel cap is checked on the header, before any decode.
    """
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    with open_image(src, max_pixels=limit) as img:
        try:
            return resize_upright(img, width, height, crop=crop, upscale=upscale, max_pixels=limit)
        except DECODE_ERRORS as exc:
            raise TaskError(f"not a readable image: {exc}") from exc


def resize_upright(
    img: Image.Image,
    width: int | None,
    height: int | None,
    *,
    crop: bool = False,
    upscale: bool = True,
    max_pixels: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """The current frame of an open ``img``, upright and resized as ``render`` describes."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and value < 1:
            raise TaskError(f"{name} must be a positive number of pixels, not {value}")
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    original = upright_size(img)
    size = target_size(original, width, height, crop=crop, upscale=upscale)
    if size[0] * size[1] > limit:
        raise TaskError(
            f"output would be {size[0]}×{size[1]} = {size[0] * size[1]} pixels, over the limit of {limit}"
        )
    # Only what the output needs is decoded: a JPEG decodes at 1/2, 1/4 or 1/8 scale when that
    # still covers the target (draft is a no-op for other formats).
    scale = max(size[0] / original[0], size[1] / original[1])
    need = [max(1, math.ceil(side * scale * _REDUCING_GAP)) for side in img.size]
    img.draft("RGB", (need[0], need[1]))
    upright = ImageOps.exif_transpose(img)

    icc = upright.info.get("icc_profile")
    if upright.mode.startswith("I"):  # 16-bit grey: scale to 8 bits, as convert() would clip
        upright = upright.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if upright.mode not in ("L", "LA", "RGB", "RGBA", "CMYK") or "transparency" in upright.info:
        upright = upright.convert("RGBA" if upright.has_transparency_data else "RGB")
    box = _centre_box(upright.size, size) if crop else None
    resized = upright.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    return _to_srgb(resized, icc), original


def save_image(img: Image.Image, dest_dir: Path, format: str, name: str = "output", **options) -> Path:
    """Write ``img`` as ``dest_dir/<name>.<ext>`` in ``format``, without metadata; returns the path.

    JPEG output has transparency flattened onto white. ``options`` go to Pillow's ``save``.
    """
    check_format(format)
    pil_format, ext, defaults = _FORMATS[format]
    if pil_format == "JPEG" and img.mode == "RGBA":
        img = _flatten(img)
    img.info.clear()  # nothing (EXIF, ICC, comments) is carried into the file
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.{ext}"
    img.save(dest, pil_format, **{**defaults, **options})
    return dest


def target_size(
    original: tuple[int, int],
    width: int | None,
    height: int | None,
    crop: bool = False,
    upscale: bool = True,
) -> tuple[int, int]:
    """The output size for an upright source of size ``original`` (see ``make_thumbnail``)."""
    ow, oh = original
    if width and height and crop:
        return width, height
    if width and height:
        scale = min(width / ow, height / oh)
    elif width:
        scale = width / ow
    elif height:
        scale = height / oh
    else:
        scale = 1.0
    if not upscale:
        scale = min(scale, 1.0)
    return max(1, round(ow * scale)), max(1, round(oh * scale))


def frame_size(
    sources: Sequence[tuple[str, Path]], width: int | None, height: int | None, max_pixels: int
) -> tuple[int, int]:
    """The frame size of a multi-image output (gif, strip): ``width``×``height`` when both
    are given, else derived from the first source's upright size (header only)."""
    if width and height:
        return width, height
    url, path = sources[0]
    with about_source(url), open_image(path, max_pixels=max_pixels) as first:
        return target_size(upright_size(first), width, height)


def _centre_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred region of ``size`` with the aspect ratio of ``target``."""
    w, h = size
    scale = max(target[0] / w, target[1] / h)
    cw, ch = target[0] / scale, target[1] / scale
    return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """``img`` as ``RGB``/``RGBA``, colour-converted to sRGB when it came with a usable ICC profile."""
    mode = "RGBA" if img.mode in ("LA", "RGBA") else "RGB"
    if icc:
        try:
            return ImageCms.profileToProfile(
                img, ImageCms.ImageCmsProfile(io.BytesIO(icc)), _SRGB, outputMode=mode
            )
        except (ImageCms.PyCMSError, OSError):
            pass  # unusable or mismatched profile: fall back to a plain conversion
    return img if img.mode == mode else img.convert(mode)


def _flatten(img: Image.Image) -> Image.Image:
    """An ``RGBA`` image composited onto white, as ``RGB``."""
    background = Image.new("RGBA", img.size, "white")
    return Image.alpha_composite(background, img).convert("RGB")


def draw_play_icon(img: Image.Image) -> None:
    """Draw a centred play icon (dark translucent disc, white triangle), ~30% of the smaller side."""
    side = max(1, round(min(img.size) * 0.3))
    big = side * 4  # drawn at 4× and scaled down, for smooth edges
    icon = Image.new("RGBA", (big, big))
    draw = ImageDraw.Draw(icon)
    draw.ellipse((0, 0, big - 1, big - 1), fill=(0, 0, 0, 128))
    c, r = big / 2, big * 0.3  # triangle centroid and circumradius
    draw.polygon(
        [(c + r, c), (c - r / 2, c - r * math.sqrt(3) / 2), (c - r / 2, c + r * math.sqrt(3) / 2)],
        fill="white",
    )
    icon = icon.resize((side, side), Image.Resampling.LANCZOS)
    position = ((img.width - side) // 2, (img.height - side) // 2)
    if img.mode == "RGBA":
        img.alpha_composite(icon, position)
    else:
        img.paste(icon, position, icon)

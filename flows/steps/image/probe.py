"""Read an image's header and EXIF without decoding its pixels (the ``image.info`` task)."""

from __future__ import annotations

import asyncio
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from flows.errors import FetchError, TaskError
from flows.settings import get_settings
from flows.steps.step import step, step_log

# EXIF orientation -> clockwise degrees to turn the stored pixels to see the image as shot.
# Orientations 2, 4, 5 and 7 need a mirror flip, which no rotation alone can express.
_ROTATION = {1: 0.0, 3: 180.0, 6: 90.0, 8: 270.0}

# Exceptions Pillow raises for a file that is not a (complete, valid) image.
DECODE_ERRORS = (OSError, SyntaxError, EOFError)


@dataclass(frozen=True)
class ImageProbe:
    """What the file header says; ``width``/``height`` are as stored, before EXIF orientation."""

    format: str
    content_type: str
    width: int
    height: int
    alpha: bool
    exif_orientation: int | None = None
    date_time: str | None = None
    flash: bool | None = None
    focal_length: float | None = None
    iso_speed: float | None = None
    exposure_time: float | None = None

    @property
    def rotation(self) -> float | None:
        """Clockwise degrees that show the image as shot; None when a flip is needed or unknown."""
        return None if self.exif_orientation is None else _ROTATION.get(self.exif_orientation)


# Pillow refuses images over twice its MAX_IMAGE_PIXELS inside Image.open, before our own
# check: keep that backstop, but never below the limit of the settings (which may be raised).
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, get_settings().max_image_pixels)


def _over_limit(width: int, height: int, limit: int) -> TaskError:
    return TaskError(f"image is {width}×{height} = {width * height} pixels, over the limit of {limit}"
                     " (DRAGONFLOW_MAX_IMAGE_PIXELS); refused before decoding")


def _webp_canvas(head: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file header declares (libwebp allocates the whole canvas as
    soon as Pillow opens the file, so it is checked first); None for any other file."""
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def open_image(path: Path, *, max_pixels: int | None = None) -> ImageFile.ImageFile:
    """Open ``path`` lazily (header only), refusing it before any decode if it has too many pixels.

    The caller closes the image (use it as a context manager).
    """
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    try:
        with open(path, "rb") as file:
            canvas = _webp_canvas(file.read(30))
    except FileNotFoundError:
        raise
    except OSError:
        canvas = None  # Image.open says what is wrong
    if canvas and canvas[0] * canvas[1] > limit:
        raise _over_limit(*canvas, limit)
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        if pixels and int(pixels[1]) > limit:
            raise TaskError(f"image has {pixels[1]} pixels, over the limit of {limit}"
                            " (DRAGONFLOW_MAX_IMAGE_PIXELS); refused before decoding") from exc
        raise TaskError(f"image refused as a possible decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise TaskError("not a readable image: unknown or unsupported format") from exc
    except DECODE_ERRORS as exc:
        raise TaskError(f"not a readable image: {exc}") from exc
    width, height = img.size
    if width * height > limit:
        img.close()
        raise _over_limit(width, height, limit)
    return img


def upright_size(img: Image.Image) -> tuple[int, int]:
    """``img``'s size once turned upright from its EXIF orientation (5-8 swap the sides)."""
    turned = img.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    return (img.height, img.width) if turned else img.size


@contextmanager
def about_source(url: str) -> Iterator[None]:
    """Prefix the message of a TaskError raised inside with the input ``url`` it concerns
    (a FetchError already names it)."""
    try:
        yield
    except FetchError:
        raise
    except TaskError as exc:
        raise TaskError(f"{url}: {exc}") from exc


def probe_image(path: Path, *, max_pixels: int | None = None) -> ImageProbe:
    """Probe ``path``: format, stored size, alpha and the EXIF values ``image.info`` reports.

    Only the header is read, so a file truncated in its pixel data still probes fine;
    a PNG ``eXIf`` chunk placed after the pixel data is not seen.
    """
    with open_image(path, max_pixels=max_pixels) as img:
        # Image.getexif, not PngImageFile.getexif: the latter decodes the pixels to find late chunks.
        exif = Image.Image.getexif(img)
        sub = exif.get_ifd(ExifTags.IFD.Exif)

        def tag(code: int) -> object:
            return sub.get(code, exif.get(code))

        orientation = exif.get(ExifTags.Base.Orientation)
        flash = _first(tag(ExifTags.Base.Flash))
        return ImageProbe(
            format=img.format,
            content_type=img.get_format_mimetype() or "application/octet-stream",
            width=img.width,
            height=img.height,
            alpha=img.has_transparency_data,
            exif_orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
            date_time=_text(tag(ExifTags.Base.DateTimeOriginal)) or _text(exif.get(ExifTags.Base.DateTime)),
            flash=bool(flash & 1) if isinstance(flash, int) else None,
            focal_length=_number(tag(ExifTags.Base.FocalLength)),
            iso_speed=_number(tag(ExifTags.Base.ISOSpeedRatings)),
            exposure_time=_number(tag(ExifTags.Base.ExposureTime)),
        )


@step("probe", run_name="probe {path.name}")
async def probe(path: Path) -> ImageProbe:
    """``probe_image`` as a step, off the event loop."""
    found = await asyncio.to_thread(probe_image, path)
    step_log("%s: %s %dx%d%s", path.name, found.format, found.width, found.height, " with alpha" if found.alpha else "")
    return found


def to_image_info(probe: ImageProbe) -> dict:
    """The v2 ``image.info`` output values (width/height are the stored pixel dimensions)."""
    return {
        "content_type": probe.content_type,
        "type": "image",
        "width": probe.width,
        "height": probe.height,
        "alpha": probe.alpha,
        "exif_orientation": probe.exif_orientation,
        "rotation": probe.rotation,
        "date_time": probe.date_time,
        "flash": probe.flash,
        "focal_length": probe.focal_length,
        "iso_speed": probe.iso_speed,
        "exposure_time": probe.exposure_time,
    }


def _first(value: object) -> object:
    """A multi-valued EXIF tag's first value (single values pass through)."""
    return (value[0] if value else None) if isinstance(value, tuple) else value


def _text(value: object) -> str | None:
    """An EXIF ASCII value without its NUL padding; None when absent or blank."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ") or None


def _number(value: object) -> float | None:
    """An EXIF number or rational as a finite float; None when absent or unusable (e.g. x/0)."""
    value = _first(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None

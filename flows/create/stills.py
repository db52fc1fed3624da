"""Still pictures of a render, prepared once with Pillow and handed to ffmpeg as files.

Every picture asset, colour plate and drawn text is made once at the size it is shown at
(decoded, upright, fitted, its still filters applied) and written as a one-frame YUV4MPEG
file in the movie's colours: **BT.709, limited range** (``C420jpeg`` when opaque,
``C444alpha`` with an alpha plane when it has transparency; ``XCOLORRANGE=LIMITED``). The
graph loops that one frame for as long as it is shown, so no colour conversion runs per frame.

Memory stays bounded however many pictures a movie has: decoded originals are kept in a
small LRU (``DECODED_CACHE``; a picture is usually prepared once), prepared frames live on
disk, and only their paths are remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageChops, ImageFilter, ImageOps

from flows.create.sxml import Color, InvalidImageError
from flows.create.timeline import Modifier, VisualClip
from flows.errors import TaskError

MAX_PREPARED_SIDE = 8192
"""JPEGs larger than this are decoded at a reduced scale (``draft``)."""
DECODED_CACHE = 4
"""Decoded originals kept at once (the pictures of a movie are prepared one after another)."""

KR, KB = 0.2126, 0.0722
"""BT.709 luma coefficients of red and blue."""
_KG = 1 - KR - KB
_Y, _C = 219 / 255, 224 / 255
BT709_LIMITED = (
    _Y * KR, _Y * _KG, _Y * KB, 16.0,
    -_C * KR / (2 * (1 - KB)), -_C * _KG / (2 * (1 - KB)), _C * (1 - KB) / (2 * (1 - KB)), 128.0,
    _C * (1 - KR) / (2 * (1 - KR)), -_C * _KG / (2 * (1 - KR)), -_C * KB / (2 * (1 - KR)), 128.0,
)
"""RGB -> limited-range BT.709 Y'CbCr, as a Pillow ``convert`` matrix (rows Y, Cb, Cr)."""

def write_y4m(image: PILImage.Image, path: Path, rate: Fraction = Fraction(25), keep_alpha: bool = False) -> bool:
    """``image`` as a one-frame limited-range BT.709 YUV4MPEG file: 4:2:0 when opaque, 4:4:4
    with a (full-range) alpha plane when it has transparency (or ``keep_alpha``, even an opaque
    one). Returns whether it has alpha."""
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        alpha = image.getchannel("A")
        if alpha.getextrema()[0] == 255 and not keep_alpha:
            alpha = None
    width, height = image.size
    y, cb, cr = image.convert("RGB").convert("RGB", BT709_LIMITED).split()
    if alpha is None:
        chroma = ((width + 1) // 2, (height + 1) // 2)
        planes = (y, cb.resize(chroma, PILImage.BILINEAR), cr.resize(chroma, PILImage.BILINEAR))
        tag = "C420jpeg"
    else:
        planes, tag = (y, cb, cr, alpha), "C444alpha"
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 {tag}"
                  " XCOLORRANGE=LIMITED\nFRAME\n".encode())
        for plane in planes:
            out.write(plane.tobytes())
    return alpha is not None


def open_picture(path: Path, clip: VisualClip | None = None) -> PILImage.Image:
    """Decode an image asset (upright, RGB/RGBA); InvalidImageError if it cannot be."""
    from flows.steps.image.probe import open_image

    url = clip.media.filename if clip is not None else path.name
    line = clip.line if clip is not None else None
    try:
        with open_image(path) as img:
            img.draft("RGB", (MAX_PREPARED_SIDE, MAX_PREPARED_SIDE))
            img = ImageOps.exif_transpose(img)
            img.load()
            return img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB")
    except InvalidImageError:
        raise
    except (TaskError, OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise InvalidImageError(f"<image> attribute filename: {url} is not an image that can be decoded ({exc})",
                                line) from None


def fit_picture(img: PILImage.Image, size: tuple[int, int], mode: str) -> PILImage.Image:
    """``img`` at ``size``: ``fill`` cover-crops; ``fit`` letterboxes on black; ``box``
    stretches; ``contain`` keeps the aspect with transparent borders."""
    w, h = size
    if mode == "fill":
        return ImageOps.fit(img, size, PILImage.BICUBIC)
    if mode in ("fit", "contain"):
        inner = ImageOps.contain(img, size, PILImage.BICUBIC)
        canvas = PILImage.new("RGB", size, (0, 0, 0)) if mode == "fit" else PILImage.new("RGBA", size, (0, 0, 0, 0))
        canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2),
                     inner if mode == "fit" and inner.mode == "RGBA" else None)
        return canvas
    return img.resize(size, PILImage.BICUBIC)


def still_filters(img: PILImage.Image, clip: VisualClip, modifiers: list[Modifier]) -> PILImage.Image:
    """The filters of an image that are done once on the still (``frame``, ``borderBlur``)
    when they span the whole clip."""
    for modifier in modifiers:
        node = modifier.node
        if getattr(node, "tag", "") != "filter" or (modifier.start > clip.start + 1e-6 or modifier.end < clip.end - 1e-6):
            continue
        kind = node.type
        if kind == "frame":
            width = float(node.params.get("width", 0.05) or 0.05)
            color = node.params.get("color") or Color(255, 255, 255)
            border = max(1, round(width * min(img.size)))
            inner = img.resize((max(1, img.width - 2 * border), max(1, img.height - 2 * border)), PILImage.BICUBIC)
            framed = PILImage.new(img.mode, img.size, tuple(color)[: len(img.mode)])
            framed.paste(inner, (border, border))
            img = framed
        elif kind == "borderBlur":
            width = float(node.params.get("width", 0.05) or 0.05)
            border = max(1, round(width * min(img.size)))
            mask = PILImage.new("L", img.size, 0)
            mask.paste(255, (border, border, img.width - border, img.height - border))
            mask = mask.filter(ImageFilter.GaussianBlur(border / 2))
            img = img.convert("RGBA")
            img.putalpha(ImageChops.multiply(img.getchannel("A"), mask))
    return img


def mask_cover(img: PILImage.Image, kind: str, params) -> PILImage.Image:
    """How much of the masked node each pixel of a mask picture keeps (``L``, 255 = all), by
    the filter type (§11.1): ``lumamask`` its luma; ``alphamask`` its alpha; the ``inv``
    kinds the opposite; ``mask`` how close each pixel is to ``opaqueColor`` (default white)
    rather than ``transparentColor`` (default black). A transparent pixel of a luma mask
    keeps nothing."""
    rgba = img.convert("RGBA")
    alpha = rgba.getchannel("A")
    if kind in ("alphamask", "alphainvmask"):
        cover = alpha
    elif kind == "mask":
        opaque = params.get("opaqueColor") or Color(255, 255, 255)
        clear = params.get("transparentColor") or Color(0, 0, 0)
        axis = [o - c for o, c in zip(tuple(opaque)[:3], tuple(clear)[:3])]
        length = sum(a * a for a in axis) or 1
        # the projection of (pixel - clear) on (opaque - clear), 0..1, as one colour matrix
        scale = [255 * a / length for a in axis]
        offset = -sum(s * c for s, c in zip(scale, tuple(clear)[:3]))
        cover = rgba.convert("RGB").convert("L", (*scale, offset))
        cover = ImageChops.multiply(cover, alpha)
    else:
        cover = ImageChops.multiply(rgba.convert("L"), alpha)
    return ImageOps.invert(cover) if kind.endswith("invmask") else cover


class Stills:
    """The prepared stills of one render, written into ``work_dir``."""

    def __init__(self, work_dir: Path, rate: Fraction):
        self.work_dir, self.rate = work_dir, rate
        self._decoded: OrderedDict[Path, PILImage.Image] = OrderedDict()
        self._aspects: dict[Path, float] = {}
        self._prepared: dict[tuple, tuple[Path, bool]] = {}
        self._count = 0

    def decoded(self, path: Path, clip: VisualClip) -> PILImage.Image:
        """The decoded original of ``path`` (LRU of ``DECODED_CACHE``)."""
        if path in self._decoded:
            self._decoded.move_to_end(path)
            return self._decoded[path]
        img = open_picture(path, clip)
        self._aspects[path] = img.width / img.height
        self._decoded[path] = img
        while len(self._decoded) > DECODED_CACHE:
            self._decoded.popitem(last=False)
        return img

    def aspect(self, path: Path, clip: VisualClip) -> float:
        """Width / height of the picture at ``path`` (decoded once)."""
        if path not in self._aspects:
            self.decoded(path, clip)
        return self._aspects[path]

    def picture(self, path: Path, size: tuple[int, int], mode: str, clip: VisualClip,
                modifiers: list[Modifier]) -> tuple[Path, bool]:
        """(file, has alpha) of the picture at ``path`` fitted to ``size`` (``mode``: see
        ``fit_picture``) with its still filters."""
        key = ("picture", path, size, mode, tuple(id(m) for m in modifiers))
        if key not in self._prepared:
            img = fit_picture(self.decoded(path, clip), size, mode)
            self._prepared[key] = self.write(still_filters(img, clip, modifiers), "picture")
        return self._prepared[key]

    def color(self, color: Color, size: tuple[int, int]) -> tuple[Path, bool]:
        """(file, has alpha) of a solid ``color`` plate."""
        key = ("color", tuple(color), size)
        if key not in self._prepared:
            mode = "RGB" if color.a == 255 else "RGBA"
            self._prepared[key] = self.write(PILImage.new(mode, size, tuple(color)[: len(mode)]), "color")
        return self._prepared[key]

    def mask(self, source: Path | Color, size: tuple[int, int], kind: str, params) -> Path:
        """A mask filter's cover at ``size``: a black frame whose alpha plane is ``mask_cover``
        of the picture at ``source`` (stretched to ``size``) or of a colour."""
        if isinstance(source, Path):
            img = self.decoded(source, None).resize(size, PILImage.BICUBIC)
        else:
            img = PILImage.new("RGBA", size, tuple(source))
        frame = PILImage.new("RGBA", size, (0, 0, 0, 0))
        frame.putalpha(mask_cover(img, kind, params))
        return self.write(frame, "mask", keep_alpha=True)[0]

    def write(self, image: PILImage.Image, kind: str, keep_alpha: bool = False) -> tuple[Path, bool]:
        """``image`` written as the next prepared file; (file, has alpha)."""
        self._count += 1
        target = self.work_dir / f"{kind}-{self._count:04d}.y4m"
        return target, write_y4m(image, target, self.rate, keep_alpha)

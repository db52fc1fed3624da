"""Text of a movie (spec §9) drawn with Pillow into an RGBA image the renderer overlays.

``render_text(clip, frame_size, scale, fonts)`` draws one ``TextClip`` into its box and
returns a ``TextImage``: the image at output pixels and its top-left on the frame. The
image covers exactly the box (clipped to the frame), so nothing is ever drawn outside it.

Choices the spec leaves open (§9, §16), made here and kept consistent:

- **Box**: ``clip.box`` resolved against the frame (§5.2; no placement = full frame; the
  timeline already puts an unplaced ``legend`` in the lower third).
- **fontsize** is in pixels of a 360-pixel-high frame (the default ``360p`` profile) and
  scales with the frame height, so a definition looks the same at every profile size (the
  "liquid" layout of §5.1): ``fontsize="36"`` is 36 px at 360p, 72 px at 720p. A zone text
  that does not fit at its given size is wrapped and then clipped by its box; a ``legend``
  (lower third, theme caption) never is: its ``fontsize`` is the largest it may take, and it
  shrinks until all its words fit the band in at most ``LEGEND_LINES`` lines.
- **Auto-size** (no fontsize): the largest size at which the wrapped text fits the box (less
  its padding), capped at ``AUTO_SIZE_MAX`` of the frame height so a short word in a
  full-screen zone does not become a giant glyph.
- **interlign** is a multiple of the font's line height (1.0, the default, = single spacing).
- **align**: ``left``/``center``/``right``/``justify`` (justify spreads the words of every
  line but the last of a paragraph); **valign** ``top``/``center``/``bottom``. Explicit newlines
  always break; ``wrap`` (default true) also breaks between words.
- **fontcolor** and **backgroundcolor** keep their alpha; the background fills the whole box
  (a ``legend``'s band). A ``legend`` is a zone with an inner padding of ``LEGEND_PADDING`` of
  the band's height, so its words do not touch the band's edges. Its ``direction`` movement is
  the renderer's (an animation of this image), not drawn here.
- **Fonts**: ``fonts`` maps a ``fontname`` (a family id or the URL of a font file the flow
  fetched) to a font file; the Stupeflix family ids (arial, timesnewroman, couriernew, …) map to
  the DejaVu family closest in style (``FAMILIES``); anything else falls back to DejaVu Sans
  (Debian's ``fonts-dejavu-core``, installed by bootstrap.sh). A file Pillow cannot read raises
  ``InvalidFontError`` naming the font and the text's line.
- **Antialiasing** (``scale`` = the task's ``antialias``, 1/2/4): the text is drawn at
  ``scale``× the output size and scaled down with LANCZOS. At 2 and 4 the glyphs are also
  antialiased by FreeType at that size; at 1 (no supersampling) they are drawn aliased, as
  ``antialias=1`` asks.
- ``vector="true"`` is accepted and drawn the same way (a bitmap made once per clip, at the
  output size, is already sharp).
- **Text effects** of the ``distancecolor`` filters (§9; ``distancemap`` needs nothing here):
  ``color`` (fill), ``fillOpacity``; a stroke ``strokeWidth`` (1.0 = ``STROKE_EM`` of the font
  size, drawn outside the glyphs whatever ``strokePosition``), ``strokeColor``, ``strokeOpacity``;
  a drop shadow (any ``dropShadow*``): ``dropShadowColor``, ``dropShadowOpacity``,
  ``dropShadowBlurWidth`` (1.0 = a blur of ``BLUR_EM`` of the font size), ``dropShadowWidth``,
  ``dropShadowPosition`` (``x,y`` in box heights, y up) or ``dropShadowAngle`` (degrees) +
  ``dropShadowDistance``; an outer glow (``outerGlow*``: colour, opacity, width, blur); inside
  the glyphs, over the fill, an inner shadow (``innerShadow*``, the same parameters as the drop
  shadow, blur 0.2 by default) and an inner glow (``innerGlow*``, as the outer glow). Animated
  filter parameters are not drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from flows.create.sxml import Color, InvalidFontError, Text
from flows.create.timeline import TextClip

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
DEFAULT_FONT = FONT_DIR / "DejaVuSans.ttf"
"""The shipped default font (Debian package ``fonts-dejavu-core``)."""

FAMILIES: dict[str, str] = {
    "arial": "DejaVuSans.ttf",
    "arialbold": "DejaVuSans-Bold.ttf",
    "arialroundedmtbold": "DejaVuSans-Bold.ttf",
    "verdana": "DejaVuSans.ttf",
    "comicsansms": "DejaVuSans.ttf",
    "landspeedrecord": "DejaVuSans-Bold.ttf",
    "saddlebag": "DejaVuSerif-Bold.ttf",
    "timesnewroman": "DejaVuSerif.ttf",
    "couriernew": "DejaVuSansMono.ttf",
    "dejavusans": "DejaVuSans.ttf",
    "dejavusansbold": "DejaVuSans-Bold.ttf",
    "dejavuserif": "DejaVuSerif.ttf",
    "dejavusansmono": "DejaVuSansMono.ttf",
}
"""Stupeflix font ids (spec §9) -> the DejaVu file closest in style (sans, serif, mono, bold)."""

FONTSIZE_REFERENCE_HEIGHT = 360
"""``fontsize`` is in pixels of a frame this many pixels high; it scales with the frame."""
AUTO_SIZE_MAX = 0.2
"""Largest auto-sized font, as a fraction of the frame height."""
LEGEND_PADDING = 0.12
"""A legend's inner padding, as a fraction of its band's height (each side)."""
MIN_FONT_PX = 1
LEGEND_LINES = 2
"""Most lines of a legend (a lower third, a theme caption) before its font shrinks further."""
STROKE_EM = 0.25
"""``strokeWidth``/``dropShadowWidth``/``outerGlowWidth`` 1.0 = this fraction of the font size."""
BLUR_EM = 0.25
"""``dropShadowBlurWidth``/``outerGlowBlurWidth`` 1.0 = a blur radius of this fraction of the font size."""
SHADOW_DISTANCE = 0.03
"""Offset of a drop shadow given no position or distance (box heights, down-right)."""


@dataclass(frozen=True)
class TextImage:
    """A drawn text: ``image`` (RGBA, output pixels) to overlay with its top-left at ``x, y``."""

    image: Image.Image
    x: int
    y: int


def default_font() -> Path:
    """The font used when a ``fontname`` is absent or unknown (DejaVu Sans)."""
    return DEFAULT_FONT


def font_file(fontname: str | None, fonts: dict[str, Path]) -> Path:
    """The font file for ``fontname``: the flow's ``fonts`` first, then the DejaVu family
    matching a Stupeflix id, else the default."""
    if fontname:
        if fontname in fonts:
            return Path(fonts[fontname])
        key = "".join(ch for ch in fontname.lower() if ch.isalnum())
        if key in FAMILIES and (FONT_DIR / FAMILIES[key]).is_file():
            return FONT_DIR / FAMILIES[key]
    return default_font()


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _load(path: Path, size: int, clip: TextClip) -> ImageFont.FreeTypeFont:
    try:
        return _font(str(path), size)
    except (OSError, ValueError) as exc:
        name = clip.text.fontname or path.name
        raise InvalidFontError(
            f"<text> attribute fontname: {name!r} is not a font that can be read ({exc})", clip.line
        ) from None


# --------------------------------------------------------------------------- layout


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, wrap: bool) -> list[list[str | None]]:
    """Lines as lists of words (a paragraph's last line flagged by a trailing None)."""
    lines: list[list[str | None]] = []
    space = font.getlength(" ")
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if not wrap or not words:
            lines.append([paragraph.strip(), None] if words else [None])
            continue
        current: list[str] = []
        used = 0.0
        for word in words:
            extent = font.getlength(word)
            if current and used + space + extent > width:
                lines.append(current)
                current, used = [word], extent
            else:
                used = used + space + extent if current else extent
                current.append(word)
        lines.append([*current, None])
    return lines


def _words(line: list) -> list[str]:
    return [w for w in line if w is not None]


def _metrics(font: ImageFont.FreeTypeFont, interlign: float) -> tuple[int, float]:
    ascent, descent = font.getmetrics()
    height = ascent + descent
    return height, height * interlign


def _block(lines: list[list], font: ImageFont.FreeTypeFont, interlign: float) -> tuple[float, float]:
    """(widest line, total height) of laid-out lines."""
    height, step = _metrics(font, interlign)
    widest = max((font.getlength(" ".join(_words(line))) for line in lines), default=0.0)
    return widest, height + step * (len(lines) - 1) if lines else 0.0


def _auto_size(text: str, path: Path, clip: TextClip, width: float, height: float, cap: int, interlign: float,
               max_lines: int | None) -> int:
    """The largest size (pixels, at most ``cap``) at which ``text`` wrapped to ``width`` fits
    ``height`` in at most ``max_lines`` lines (None: any number)."""

    def fits(size: int) -> bool:
        font = _load(path, size, clip)
        lines = _wrap(text, font, width, clip.text.wrap)
        widest, total = _block(lines, font, interlign)
        return widest <= width and total <= height and (max_lines is None or len(lines) <= max_lines)

    low, high = MIN_FONT_PX, max(MIN_FONT_PX, min(cap, int(height)))
    if fits(high):
        return high
    while high - low > 1:  # fits(low) is assumed (or nothing does: the smallest is used)
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class Layout:
    """Where a text's words go, in supersampled pixels of its box: the font ``size``, the
    ``lines`` (words) and each run of text drawn at its top-left (``runs``)."""

    size: int
    lines: tuple[tuple[str, ...], ...]
    runs: tuple[tuple[float, float, str], ...]


def layout(clip: TextClip, box: tuple[int, int], frame_height: int, scale: int, path: Path) -> Layout:
    """Size, wrap and align ``clip``'s text in a box of ``box`` pixels (already ``scale``d).
    A legend (and a theme caption) shrinks below its ``fontsize`` to fit its band, in at most
    ``LEGEND_LINES`` lines (or its paragraphs, if more)."""
    node = clip.text
    text = node.text.strip("\n")
    big_w, big_h = box
    pad = round(LEGEND_PADDING * big_h) if node.kind == "legend" else 0
    pad_x = min(pad, big_w // 4)
    inner_w, inner_h = max(1, big_w - 2 * pad_x), max(1, big_h - 2 * pad)
    interlign = node.interlign if node.interlign and node.interlign > 0 else 1.0
    given = None
    if node.fontsize is not None:
        given = max(MIN_FONT_PX, round(node.fontsize * frame_height / FONTSIZE_REFERENCE_HEIGHT * scale))
    if given is not None and node.kind != "legend":
        size = given
    else:
        cap = given or max(MIN_FONT_PX, round(AUTO_SIZE_MAX * frame_height * scale))
        lines = max(LEGEND_LINES, text.count("\n") + 1) if node.kind == "legend" else None
        size = _auto_size(text, path, clip, inner_w, inner_h, cap, interlign, lines)
    font = _load(path, size, clip)
    wrapped = _wrap(text, font, inner_w, node.wrap)
    line_h, step = _metrics(font, interlign)
    total = line_h + step * (len(wrapped) - 1)
    if node.valign == "top":
        top = pad
    elif node.valign == "bottom":
        top = big_h - pad - total
    else:
        top = pad + (inner_h - total) / 2
    runs: list[tuple[float, float, str]] = []
    for index, line in enumerate(wrapped):
        words = _words(line)
        if not words:
            continue
        y = top + index * step
        last_of_paragraph = line[-1] is None
        if node.align == "justify" and not last_of_paragraph and len(words) > 1:
            extents = [font.getlength(w) for w in words]
            gap = (inner_w - sum(extents)) / (len(words) - 1)
            x = float(pad_x)
            for word, extent in zip(words, extents):
                runs.append((x, y, word))
                x += extent + gap
            continue
        content = " ".join(words)
        extent = font.getlength(content)
        if node.align == "left" or node.align == "justify":
            x = pad_x
        elif node.align == "right":
            x = big_w - pad_x - extent
        else:
            x = pad_x + (inner_w - extent) / 2
        runs.append((x, y, content))
    return Layout(size, tuple(tuple(_words(line)) for line in wrapped), tuple(runs))


# --------------------------------------------------------------------------- drawing


def _pixel_box(clip: TextClip, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the text's box on the frame, in output pixels, clipped to it."""
    width, height = frame_size
    fx, fy, fw, fh = clip.box.resolve(width / height)
    x0, y0 = round(fx * width), round(fy * height)
    x1, y1 = round((fx + fw) * width), round((fy + fh) * height)
    x0, x1 = sorted((min(max(x0, 0), width), min(max(x1, 0), width)))
    y0, y1 = sorted((min(max(y0, 0), height), min(max(y1, 0), height)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _solid(size: tuple[int, int], color: Color | None) -> Image.Image:
    return Image.new("RGBA", size, tuple(color) if color is not None else (0, 0, 0, 0))


@dataclass(frozen=True)
class Halo:
    """A shadow or glow under the text: its ink widened by ``width`` and blurred by ``blur`` (em
    fractions), moved by ``offset`` (box heights, y up)."""

    color: Color
    opacity: float
    width: float
    blur: float
    offset: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class TextStyle:
    """The look a text's ``distancecolor`` filters give it (§9): fill colour and opacity, a
    stroke, and halos (drop shadow, outer glow)."""

    fill: Color | None = None
    fill_opacity: float = 1.0
    stroke_width: float = 0.0
    stroke_color: Color = Color(0, 0, 0)
    stroke_opacity: float = 1.0
    halos: tuple[Halo, ...] = ()
    inner: tuple[Halo, ...] = ()

    @classmethod
    def of(cls, node: Text) -> "TextStyle":
        """The style of ``node``'s ``distancecolor`` filters (the later one wins per parameter)."""
        params: dict[str, object] = {}
        for f in node.filters:
            if f.type == "distancecolor":
                params.update(f.params.items)

        def number(name: str, default: float) -> float:
            value = params.get(name)
            return default if value is None else float(value)

        def shadow(prefix: str, blur: float) -> Halo:
            if params.get(prefix + "Position") is not None:
                offset = tuple(params[prefix + "Position"])[:2]
            else:
                angle = math.radians(number(prefix + "Angle", -45.0))
                distance = number(prefix + "Distance", SHADOW_DISTANCE)
                offset = (distance * math.cos(angle), distance * math.sin(angle))
            return Halo(params.get(prefix + "Color") or Color(0, 0, 0), number(prefix + "Opacity", 1.0),
                        number(prefix + "Width", 0.0) * STROKE_EM, number(prefix + "BlurWidth", blur) * BLUR_EM,
                        offset)

        def glow(prefix: str) -> Halo:
            return Halo(params.get(prefix + "Color") or Color(255, 255, 255), number(prefix + "Opacity", 1.0),
                        number(prefix + "Width", 0.5) * STROKE_EM, number(prefix + "BlurWidth", 0.5) * BLUR_EM)

        def has(prefix: str) -> bool:
            return any(k.startswith(prefix) for k in params)

        halos = [shadow("dropShadow", 0.0)] if has("dropShadow") else []
        halos += [glow("outerGlow")] if has("outerGlow") else []
        inner = [shadow("innerShadow", 0.2)] if has("innerShadow") else []
        inner += [glow("innerGlow")] if has("innerGlow") else []
        return cls(
            fill=params.get("color"), fill_opacity=number("fillOpacity", 1.0),
            stroke_width=number("strokeWidth", 0.0) * STROKE_EM,
            stroke_color=params.get("strokeColor") or Color(0, 0, 0), stroke_opacity=number("strokeOpacity", 1.0),
            halos=tuple(halos), inner=tuple(inner),
        )


def render_text(clip: TextClip, frame_size: tuple[int, int], scale: int, fonts: dict[str, Path]) -> TextImage:
    """Draw ``clip``'s text in its box on a ``frame_size`` frame, supersampled ``scale``×
    (1, 2 or 4), with the stroke, shadow and glow of its ``distancecolor`` filters. See the
    module notes for sizes, fonts and alignment."""
    node = clip.text
    scale = max(1, int(scale))
    frame_h = frame_size[1]
    x0, y0, x1, y1 = _pixel_box(clip, frame_size)
    box_w, box_h = x1 - x0, y1 - y0
    out = _solid((box_w, box_h), node.backgroundcolor)
    path = font_file(node.fontname, fonts)
    if not node.text.strip():
        _load(path, 12, clip)  # a bad font is an error even for an empty text
        return TextImage(out, x0, y0)

    big = (box_w * scale, box_h * scale)
    laid = layout(clip, big, frame_h, scale, path)
    font = _load(path, laid.size, clip)
    style = TextStyle.of(node)
    box_px = box_h * scale  # zone-height units of dropShadowPosition

    def mask(stroke: float = 0.0, blur: float = 0.0, offset: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
        """The ink (widened by ``stroke``, offset, blurred: em fractions / box heights) at output size."""
        drawn = Image.new("L", big, 0)
        draw = ImageDraw.Draw(drawn)
        draw.fontmode = "L" if scale > 1 else "1"
        width = round(stroke * laid.size)
        dx, dy = offset[0] * box_px, -offset[1] * box_px  # SXML y points up
        for x, y, run in laid.runs:
            draw.text((x + dx, y + dy), run, font=font, fill=255, anchor="la", stroke_width=width, stroke_fill=255)
        if blur > 0:
            drawn = drawn.filter(ImageFilter.GaussianBlur(blur * laid.size))
        return drawn.resize((box_w, box_h), Image.Resampling.LANCZOS) if scale > 1 else drawn

    for layer in style.halos:  # shadows and glows, under the text
        out.alpha_composite(_ink(mask(layer.width, layer.blur, layer.offset), layer.color, layer.opacity))
    if style.stroke_width > 0:
        out.alpha_composite(_ink(mask(style.stroke_width), style.stroke_color, style.stroke_opacity))
    glyphs = mask()
    fill = style.fill or node.fontcolor
    face = _ink(glyphs, fill, style.fill_opacity)
    if style.inner:  # inner shadows and glows: the outside's edge, moved and blurred, painted on the face
        painted = Image.new("RGBA", glyphs.size, (fill.r, fill.g, fill.b, 255))
        for layer in style.inner:
            outside = ImageOps.invert(mask(offset=layer.offset) if layer.offset != (0.0, 0.0) else glyphs)
            radius = (layer.width + layer.blur) * laid.size / scale
            if radius > 0:
                outside = outside.filter(ImageFilter.GaussianBlur(radius))
            painted.alpha_composite(_ink(outside, layer.color, layer.opacity))
        painted.putalpha(face.getchannel("A"))
        face = painted
    out.alpha_composite(face)
    return TextImage(out, x0, y0)


def _ink(mask: Image.Image, color: Color, opacity: float = 1.0) -> Image.Image:
    """``color`` through ``mask`` (times the colour's alpha and ``opacity``)."""
    factor = color.a / 255 * max(0.0, min(1.0, opacity))
    ink = Image.new("RGBA", mask.size, (color.r, color.g, color.b, 0))
    ink.putalpha(mask.point(lambda v: round(v * factor)) if factor < 1 else mask)
    return ink

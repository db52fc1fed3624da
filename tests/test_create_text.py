"""video.create's text (spec §9): drawn into its box, aligned, sized, wrapped, antialiased; long
captions shrunk into their lower third; stroke, drop shadow, inner shadow and inner glow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.create.sxml import Box, Color, InvalidFontError, Text, parse
from flows.create.text import FONT_DIR, LEGEND_LINES, LEGEND_PADDING, TextImage, default_font, layout, render_text
from flows.create.timeline import LOWER_THIRD, TextClip, plan

FRAME = (320, 180)
BOX = Box(top=0.1, left=0.2, width=0.5, height=0.4)


def clip(text: str = "Hello", box: Box = BOX, line: int = 7, **attrs) -> TextClip:
    node = Text(line=line, text=text, **attrs)
    return TextClip(path=(0,), line=line, start=0.0, end=1.0, text=node, box=box)


def alpha(drawn: TextImage, frame=FRAME) -> np.ndarray:
    """The text's alpha placed on the whole frame."""
    plane = np.zeros((frame[1], frame[0]), dtype=np.uint8)
    a = np.asarray(drawn.image.getchannel("A"))
    plane[drawn.y : drawn.y + a.shape[0], drawn.x : drawn.x + a.shape[1]] = a
    return plane


def ink_rows(mask: np.ndarray) -> int:
    """Number of separate runs of rows holding ink (text lines)."""
    rows = (mask > 64).any(axis=1)
    return int(np.sum(rows[1:] & ~rows[:-1]) + rows[0])


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask > 64)
    return float(xs.mean()), float(ys.mean())


def extent(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask > 64)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_ink_is_inside_the_box_and_nowhere_else():
    drawn = render_text(clip("Inside the box, wrapped over lines"), FRAME, 4, {})
    assert (drawn.x, drawn.y) == (64, 18)  # left 0.2 x 320, top 0.1 x 180
    assert drawn.image.mode == "RGBA" and drawn.image.size == (160, 72)
    mask = alpha(drawn)
    inside = np.zeros_like(mask, dtype=bool)
    inside[18:90, 64:224] = True
    assert mask[inside].max() == 255 and (mask[inside] > 64).sum() > 300
    assert mask[~inside].max() == 0


def test_unplaced_text_covers_the_frame_and_a_legend_sits_in_the_lower_third():
    definition = parse(
        '<movie service="craftsman-1.0"><body><stack duration="2">'
        '<text type="zone">Full</text>\n<text type="legend" backgroundcolor="#00000080">Caption</text>'
        "</stack></body></movie>"
    )
    zone, legend = plan(definition.movie).texts
    full = render_text(zone, FRAME, 2, {})
    assert (full.x, full.y, full.image.size) == (0, 0, FRAME)
    band = render_text(legend, FRAME, 2, {})
    assert legend.box == LOWER_THIRD
    x, y, w, h = LOWER_THIRD.resolve(FRAME[0] / FRAME[1])
    assert (band.x, band.y) == (round(x * 320), round(y * 180)) and band.y > 120
    pixels = np.asarray(band.image)
    assert tuple(pixels[0, 0]) == (0, 0, 0, 0x80)  # the band fills the box, alpha kept
    # the legend's padding keeps its words off the band's edges
    text_mask = pixels[..., 3] > 0xC0
    assert text_mask.any() and not text_mask[0].any() and not text_mask[-1].any()


def test_alignment_moves_the_ink():
    xs = {a: centroid(alpha(render_text(clip("Hi", align=a, fontsize=20), FRAME, 2, {})))[0]
          for a in ("left", "center", "right")}
    assert xs["left"] < 90 < xs["center"] - 40 and xs["center"] + 40 < xs["right"]
    assert abs(xs["center"] - 144) < 4  # the box's centre: 64 + 160 / 2
    ys = {v: centroid(alpha(render_text(clip("Hi", valign=v, fontsize=20), FRAME, 2, {})))[1]
          for v in ("top", "center", "bottom")}
    assert ys["top"] + 15 < ys["center"] < ys["bottom"] - 15


def test_justify_spreads_full_lines_to_both_edges():
    text = "one two three four five six seven eight nine ten eleven"
    left = alpha(render_text(clip(text, align="left", valign="top", fontsize=20), FRAME, 2, {}))
    justified = alpha(render_text(clip(text, align="justify", valign="top", fontsize=20), FRAME, 2, {}))
    assert ink_rows(justified) == ink_rows(left) >= 2
    first_line = slice(18, 18 + 12)
    right_edge = lambda m: np.nonzero((m[first_line] > 64).any(axis=0))[0].max()  # noqa: E731
    assert right_edge(justified) >= 220 > right_edge(left) + 4  # the box's right edge is at 224
    last_line_left = np.nonzero((justified[18 + 12 :] > 64).any(axis=0))[0]
    assert last_line_left.min() < 70  # a paragraph's last line stays left-aligned


def test_auto_size_fills_more_of_a_bigger_box():
    small = alpha(render_text(clip("Title", box=Box(top=0.1, left=0.1, width=0.3, height=0.1)), FRAME, 4, {}))
    big = alpha(render_text(clip("Title", box=Box(top=0.3, left=0.1, width=0.8, height=0.25)), FRAME, 4, {}))
    (small_w, small_h), (big_w, big_h) = extent(small), extent(big)
    assert big_h > 1.8 * small_h and big_w > 1.8 * small_w
    # "fits": the word spans most of one side of its box
    assert small_w > 0.75 * 96 or small_h > 0.6 * 18
    assert big_w > 0.75 * 256 or big_h > 0.6 * 45


def test_auto_size_of_many_words_wraps_them_into_the_box():
    text = "a long sentence that must wrap onto several lines to fit"
    drawn = alpha(render_text(clip(text, box=Box(top=0.1, left=0.3, width=0.4, height=0.6)), FRAME, 2, {}))
    assert ink_rows(drawn) >= 3
    assert drawn[:, :96].max() == 0 and drawn[:, 224:].max() == 0


def test_a_narrow_box_makes_more_lines_and_newlines_are_kept():
    text = "several words to be wrapped here"
    wide = alpha(render_text(clip(text, box=Box(top=0.1, left=0.0, width=1.0, height=0.8), fontsize=24), FRAME, 2, {}))
    narrow = alpha(render_text(clip(text, box=Box(top=0.1, left=0.3, width=0.25, height=0.8), fontsize=24), FRAME, 2, {}))
    assert ink_rows(wide) == 1 and ink_rows(narrow) >= 3
    unwrapped = alpha(render_text(clip(text, box=Box(top=0.1, left=0.3, width=0.25, height=0.8), fontsize=24,
                                       wrap=False), FRAME, 2, {}))
    assert ink_rows(unwrapped) == 1
    two = alpha(render_text(clip("top\nbottom", fontsize=24), FRAME, 2, {}))
    assert ink_rows(two) == 2
    spaced = alpha(render_text(clip("top\nbottom", fontsize=24, interlign=2.0), FRAME, 2, {}))
    assert extent(spaced)[1] > extent(two)[1] + 8


def test_fontsize_scales_with_the_frame_height():
    small = extent(alpha(render_text(clip("Size", fontsize=30), (640, 360), 2, {}), (640, 360)))
    large = extent(alpha(render_text(clip("Size", fontsize=30), (1280, 720), 2, {}), (1280, 720)))
    assert 1.8 < large[1] / small[1] < 2.2
    # 30 px at 360p: the capital letters are about 0.73 em high
    assert 18 <= small[1] <= 26


def test_supersampling_gives_smoother_edges():
    levels = {}
    for scale in (1, 4):
        a = np.asarray(render_text(clip("Smooth edges", fontsize=24), FRAME, scale, {}).image.getchannel("A"))
        levels[scale] = len(np.unique(a))
    assert levels[1] <= 2 < 40 < levels[4]


def test_colours_keep_their_alpha_and_the_background_fills_the_box():
    drawn = render_text(clip("Colour", fontsize=40, fontcolor=Color(255, 0, 0, 128),
                             backgroundcolor=Color(0, 0, 255, 255)), FRAME, 4, {})
    pixels = np.asarray(drawn.image).astype(int)
    assert tuple(pixels[0, 0]) == (0, 0, 255, 255) and tuple(pixels[-1, -1]) == (0, 0, 255, 255)
    assert (pixels[..., 3] == 255).all()
    # full ink: half red over blue
    reddest = pixels[pixels[..., 0].argmax() // pixels.shape[1], pixels[..., 0].argmax() % pixels.shape[1]]
    assert abs(reddest[0] - 128) <= 2 and abs(reddest[2] - 127) <= 2
    plain = np.asarray(render_text(clip("Colour", fontsize=40, fontcolor=Color(10, 200, 30, 100)), FRAME, 4, {}).image)
    assert plain[..., 3].max() == 100
    solid = plain[plain[..., 3] == 100]
    assert (solid[:, :3] == (10, 200, 30)).all()


def test_fonts_by_family_by_fetched_file_and_the_default():
    assert default_font() == Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") and default_font().is_file()
    base = alpha(render_text(clip("Font", fontsize=30), FRAME, 2, {}))
    unknown = alpha(render_text(clip("Font", fontsize=30, fontname="nosuchfamily"), FRAME, 2, {}))
    assert (base == unknown).all()
    serif = alpha(render_text(clip("Font", fontsize=30, fontname="timesnewroman"), FRAME, 2, {}))
    assert not (serif == base).all()
    url = "https://e.com/fonts/mono.ttf"
    fetched = alpha(render_text(clip("Font", fontsize=30, fontname=url), FRAME, 2, {url: FONT_DIR / "DejaVuSansMono.ttf"}))
    mono = alpha(render_text(clip("Font", fontsize=30, fontname="couriernew"), FRAME, 2, {}))
    assert (fetched == mono).all() and not (fetched == base).all()
    assert (alpha(render_text(clip("Font", fontsize=30, vector=True), FRAME, 2, {})) == base).all()


def test_a_font_file_that_cannot_be_read_is_an_invalid_font_error(tmp_path):
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"this is not a font" * 10)
    url = "https://e.com/bad.ttf"
    with pytest.raises(InvalidFontError) as caught:
        render_text(clip("Text", line=12, fontname=url), FRAME, 4, {url: bad})
    message = str(caught.value)
    assert message.startswith("InvalidFontError: line 12:") and url in message
    with pytest.raises(InvalidFontError):
        render_text(clip("", fontname=url), FRAME, 4, {url: bad})


def test_empty_text_and_a_box_partly_off_the_frame():
    empty = render_text(clip("   "), FRAME, 4, {})
    assert np.asarray(empty.image)[..., 3].max() == 0
    off = render_text(clip("Edge", box=Box(top=0.9, left=0.8, width=0.5, height=0.3), fontsize=20), FRAME, 2, {})
    assert off.x + off.image.width <= FRAME[0] and off.y + off.image.height <= FRAME[1]
    assert (off.x, off.y) == (256, 162)


def test_a_long_theme_caption_shrinks_to_fit_the_lower_third():
    """A caption far too long for the band at its size: smaller font, at most LEGEND_LINES lines,
    every word laid out, all its ink inside the band (within the band's padding)."""
    words = [f"word{i}" for i in range(36)]
    captions = "".join(
        f'<image filename="https://e.com/p.jpg" duration="3"><track type="caption"><text{size}>{text}</text>'
        "</track></image>"
        for text, size in ((" ".join(words), ""), (" ".join(words), ' fontsize="30"'), ("Short", "")))
    definition = parse('<movie service="craftsman-1.0"><body><widget type="director.theme.tiles">'
                       f'<track type="video">{captions}</track></widget></body></movie>')
    long_auto, long_sized, short = plan(definition.movie).texts
    frame = (640, 360)
    band = (576 * 2, 50 * 2)  # the lower third's box at 640x360, supersampled 2x
    sizes = {}
    for name, caption in (("auto", long_auto), ("sized", long_sized), ("short", short)):
        assert caption.box == LOWER_THIRD and caption.text.kind == "legend"
        laid = layout(caption, band, frame[1], 2, default_font())
        sizes[name] = laid.size
        assert len(laid.lines) <= LEGEND_LINES
        expected = words if name != "short" else ["Short"]
        assert [w for line in laid.lines for w in line] == expected  # every word, in order
        drawn = render_text(caption, frame, 2, {})
        x, y, w, h = LOWER_THIRD.resolve(frame[0] / frame[1])
        assert (drawn.x, drawn.y, drawn.image.size) == (round(x * 640), round(y * 360), (576, 50))
        mask = np.asarray(drawn.image.getchannel("A")) > 0
        rows = np.nonzero(mask.any(axis=1))[0]
        pad = round(LEGEND_PADDING * 50)
        assert rows.min() >= pad - 1 and rows.max() <= 50 - pad  # nothing cut at the band's edges
        assert ink_rows(np.asarray(drawn.image.getchannel("A"))) <= LEGEND_LINES
    assert sizes["auto"] < sizes["short"] / 2 and sizes["sized"] < 30 * 2  # shrunk below its fontsize


def test_distancecolor_stroke_and_drop_shadow():
    definition = parse(
        '<movie service="craftsman-1.0"><body><stack duration="1"><text type="zone" fontsize="80" '
        'fontcolor="#ffffff" top="0.2" left="0.2" width="0.6" height="0.5">Hi'
        '<filter type="distancemap" distanceWidth="40"/>'
        '<filter type="distancecolor" distanceWidth="40" strokeWidth="0.4" strokeColor="#ff0000"'
        ' dropShadowColor="#0000ff" dropShadowPosition="0.1,-0.1"/></text></stack></body></movie>')
    (styled,) = plan(definition.movie).texts
    plain = TextClip(path=(0,), line=1, start=0.0, end=1.0, box=styled.box,
                     text=Text(line=1, text="Hi", fontsize=80, box=styled.box))
    pixels = np.asarray(render_text(styled, FRAME, 2, {}).image).astype(int)
    base = np.asarray(render_text(plain, FRAME, 2, {}).image).astype(int)
    white = (pixels[..., 3] > 200) & (pixels[..., :3].min(axis=2) > 200)
    red = (pixels[..., 3] > 200) & (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    blue = (pixels[..., 3] > 200) & (pixels[..., 2] > 200) & (pixels[..., 0] < 60)
    assert white.sum() > 100 and red.sum() > 100 and blue.sum() > 100
    ink = base[..., 3] > 0
    assert not red[ink & (base[..., 3] == 255)].any()  # the stroke is around the glyphs, not on them
    # the shadow is down and to the right of the text (y up in SXML: -0.1 = down)
    ys, xs = np.nonzero(blue)
    iy, ix = np.nonzero(ink)
    assert xs.mean() > ix.mean() + 4 and ys.mean() > iy.mean() + 4


def test_inner_shadow_and_inner_glow_stay_inside_the_glyphs():
    def drawn(effects: str) -> np.ndarray:
        definition = parse(
            '<movie service="craftsman-1.0"><body><stack duration="1"><text type="zone" fontsize="200" '
            'fontcolor="#ffffff" top="0.1" left="0.1" width="0.8" height="0.8">HI'
            f'<filter type="distancecolor" distanceWidth="40" {effects}/></text></stack></body></movie>')
        (styled,) = plan(definition.movie).texts
        return np.asarray(render_text(styled, FRAME, 2, {}).image).astype(int)

    plain = drawn("")
    shadowed = drawn('innerShadowColor="#000000" innerShadowPosition="0.02,-0.02" innerShadowBlurWidth="0"')
    glowing = drawn('innerGlowColor="#ff0000" innerGlowWidth="0.05" innerGlowBlurWidth="0.1"')
    for styled in (shadowed, glowing):  # nothing drawn outside the glyphs
        assert np.array_equal(styled[..., 3], plain[..., 3])
    solid = plain[..., 3] == 255
    dark = solid & (shadowed[..., :3].max(axis=2) < 80)
    assert 50 < dark.sum() < solid.sum() / 2  # a band inside the glyphs, not all of them
    # the light comes from the top left (shadow moved down-right): the band hugs top/left edges
    ys, xs = np.nonzero(dark)
    iy, ix = np.nonzero(solid)
    assert xs.mean() < ix.mean() and ys.mean() < iy.mean()
    reddish = solid & (glowing[..., 0] > 200) & (glowing[..., 1] < 150)
    assert reddish.sum() > 50 and (solid & (glowing[..., :3].min(axis=2) > 200)).sum() > 50  # edges red, cores white

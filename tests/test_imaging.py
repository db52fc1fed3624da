"""Image probing (image.info) and thumbnails (image.thumb); every input is drawn here with Pillow."""

import math
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageDraw, ImageFile, JpegImagePlugin, TiffImagePlugin

from flows.errors import TaskError
from flows.settings import get_settings
from flows.steps.imaging import make_thumbnail
from flows.steps.probe import probe_image, to_image_info

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def close(pixel, colour, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def halves(size, first, second, *, vertical=False):
    """An image whose left (or top, with ``vertical``) half is ``first`` and the rest ``second``."""
    w, h = size
    img = Image.new("RGB", size, second)
    ImageDraw.Draw(img).rectangle((0, 0, w - 1, h // 2 - 1) if vertical else (0, 0, w // 2 - 1, h - 1), fill=first)
    return img


def save_jpeg(img, path, orientation=None, **exif_tags):
    """Save ``img`` as JPEG with an EXIF orientation and Exif sub-IFD tags (by number)."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    for code, value in exif_tags.items():
        sub[int(code[1:], 16)] = value
    img.save(path, "JPEG", quality=90, exif=exif)
    return path


def png_header(path, width, height):
    """A PNG that declares ``width``×``height`` RGB pixels but holds (almost) no pixel data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def thumb(src, tmp_path, **options):
    out_dir = tmp_path / "out"  # made by make_thumbnail when missing
    options.setdefault("width", None)
    options.setdefault("height", None)
    path, values = make_thumbnail(src, out_dir, **options)
    with Image.open(path) as img:
        img.load()
    return path, values, img


# --- probe -----------------------------------------------------------------------------------


def test_probe_reads_exif(tmp_path):
    src = tmp_path / "photo.jpg"
    img = Image.new("RGB", (64, 48), RED)
    exif = img.getexif()
    exif[0x0112] = 6
    exif[0x0132] = "2000:01:01 00:00:00"  # DateTime: DateTimeOriginal wins over it
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2021:06:01 12:34:56"
    sub[0x9209] = 0x19  # fired, auto mode
    sub[0x920A] = TiffImagePlugin.IFDRational(9, 2)
    sub[0x8827] = 400
    sub[0x829A] = TiffImagePlugin.IFDRational(1, 250)
    img.save(src, exif=exif)

    probe = probe_image(src)

    assert probe.format == "JPEG"
    assert to_image_info(probe) == {
        "content_type": "image/jpeg",
        "type": "image",
        "width": 64,
        "height": 48,
        "alpha": False,
        "exif_orientation": 6,
        "rotation": 90.0,
        "date_time": "2021:06:01 12:34:56",
        "flash": True,
        "focal_length": 4.5,
        "iso_speed": 400.0,
        "exposure_time": 0.004,
    }


def test_probe_falls_back_to_datetime_and_reads_flash_not_fired(tmp_path):
    img = Image.new("RGB", (8, 8))
    exif = img.getexif()
    exif[0x0132] = "2000:01:02 03:04:05"
    exif.get_ifd(0x8769)[0x9209] = 0x10  # flash did not fire (compulsory off)
    img.save(tmp_path / "a.jpg", exif=exif)

    probe = probe_image(tmp_path / "a.jpg")

    assert probe.date_time == "2000:01:02 03:04:05"
    assert probe.flash is False


def test_probe_without_exif(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "plain.jpg")

    info = to_image_info(probe_image(tmp_path / "plain.jpg"))

    assert (info["width"], info["height"]) == (30, 20)
    assert info["exif_orientation"] is None
    assert info["rotation"] is None
    assert [info[k] for k in ("date_time", "flash", "focal_length", "iso_speed", "exposure_time")] == [None] * 5


@pytest.mark.parametrize(
    ("orientation", "rotation"),
    [(1, 0.0), (2, None), (3, 180.0), (4, None), (5, None), (6, 90.0), (7, None), (8, 270.0)],
)
def test_probe_rotation_from_orientation(tmp_path, orientation, rotation):
    src = save_jpeg(Image.new("RGB", (40, 20)), tmp_path / "o.jpg", orientation)

    info = to_image_info(probe_image(src))

    assert info["exif_orientation"] == orientation
    assert info["rotation"] == rotation
    assert (info["width"], info["height"]) == (40, 20)  # as stored, whatever the orientation


def _palette_with_transparency():
    img = Image.new("P", (10, 10))
    img.info["transparency"] = 0
    return img


@pytest.mark.parametrize(
    ("make", "alpha"),
    [
        (lambda: Image.new("RGBA", (10, 10), (1, 2, 3, 0)), True),
        (lambda: Image.new("LA", (10, 10)), True),
        (_palette_with_transparency, True),
        (lambda: Image.new("RGB", (10, 10)), False),
        (lambda: Image.new("P", (10, 10)), False),
    ],
)
def test_probe_png_alpha(tmp_path, make, alpha):
    make().save(tmp_path / "a.png")

    probe = probe_image(tmp_path / "a.png")

    assert (probe.format, probe.content_type, probe.alpha) == ("PNG", "image/png", alpha)


@pytest.mark.parametrize(
    ("name", "with_exif"), [("a.jpg", True), ("a.png", True), ("a.webp", True), ("a.png", False)]
)
def test_probe_reads_only_the_header(tmp_path, monkeypatch, name, with_exif):
    img = Image.new("RGB", (30, 20))
    exif = img.getexif()
    if with_exif:
        exif[0x0112] = 8
        exif.get_ifd(0x8769)[0x8827] = 200
    img.save(tmp_path / name, exif=exif)

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    probe = probe_image(tmp_path / name)

    expected = (8, 200.0) if with_exif else (None, None)
    assert (probe.width, probe.height, probe.exif_orientation, probe.iso_speed) == (30, 20, *expected)


def test_probe_over_pixel_limit(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")

    with pytest.raises(TaskError, match=r"100×100 = 10000 pixels, over the limit of 9999"):
        probe_image(tmp_path / "a.png", max_pixels=9999)
    assert probe_image(tmp_path / "a.png", max_pixels=10000).width == 100


def test_pixel_limit_checked_before_decode(tmp_path):
    # 9000×9000 is under Pillow's own bomb threshold, and the file holds no pixels at all:
    # only the header check can produce this error.
    src = png_header(tmp_path / "huge.png", 9000, 9000)

    with pytest.raises(TaskError, match="81000000 pixels, over the limit of 1000000"):
        probe_image(src, max_pixels=1_000_000)
    with pytest.raises(TaskError, match="over the limit"):
        make_thumbnail(src, tmp_path, width=10, height=10, max_pixels=1_000_000)


def test_decompression_bomb_is_a_task_error(tmp_path):
    src = png_header(tmp_path / "bomb.png", 30000, 30000)  # past Pillow's hard limit

    with pytest.raises(TaskError, match="decompression bomb"):
        probe_image(src, max_pixels=10**10)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_default_limit_comes_from_settings(tmp_path):
    limit = get_settings().max_image_pixels
    side = math.isqrt(limit) + 1
    src = png_header(tmp_path / "huge.png", side, side)

    with pytest.raises(TaskError, match=f"over the limit of {limit}"):
        probe_image(src)


def test_not_an_image(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, not an image\n")

    with pytest.raises(TaskError, match="not a readable image"):
        probe_image(tmp_path / "notes.txt")
    with pytest.raises(TaskError, match="not a readable image"):
        make_thumbnail(tmp_path / "notes.txt", tmp_path, width=10, height=10)


def test_truncated_jpeg(tmp_path):
    data = (save_jpeg(Image.effect_noise((200, 200), 64).convert("RGB"), tmp_path / "full.jpg")).read_bytes()
    (tmp_path / "head.jpg").write_bytes(data[:200])  # cut inside the header
    (tmp_path / "body.jpg").write_bytes(data[: len(data) // 2])  # cut inside the pixel data

    with pytest.raises(TaskError, match="not a readable image"):
        probe_image(tmp_path / "head.jpg")
    assert probe_image(tmp_path / "body.jpg").width == 200  # the header alone is intact
    with pytest.raises(TaskError, match="not a readable image"):
        make_thumbnail(tmp_path / "body.jpg", tmp_path, width=50, height=None)


# --- thumbnail sizing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (100, 100, (100, 50)),  # fit inside the box
        (100, 10, (20, 10)),
        (800, 800, (800, 400)),  # scaled up to the box
        (100, None, (100, 50)),
        (None, 50, (100, 50)),
        (None, None, (400, 200)),
    ],
)
def test_thumbnail_size(tmp_path, width, height, expected):
    Image.new("RGB", (400, 200), BLUE).save(tmp_path / "src.png")

    path, values, img = thumb(tmp_path / "src.png", tmp_path, width=width, height=height)

    assert img.size == expected
    assert values == {"width": expected[0], "height": expected[1], "original_width": 400, "original_height": 200}


def test_fit_keeps_the_whole_image(tmp_path):
    halves((300, 100), RED, BLUE).save(tmp_path / "src.png")

    _, _, img = thumb(tmp_path / "src.png", tmp_path, width=60, height=60)

    assert img.size == (60, 20)
    assert close(img.getpixel((1, 10)), RED) and close(img.getpixel((58, 10)), BLUE)


def test_crop_fills_the_box_from_the_centre(tmp_path):
    src = Image.new("RGB", (300, 100), GREEN)
    draw = ImageDraw.Draw(src)
    draw.rectangle((0, 0, 99, 99), fill=RED)
    draw.rectangle((200, 0, 299, 99), fill=BLUE)
    src.save(tmp_path / "src.png")

    _, values, img = thumb(tmp_path / "src.png", tmp_path, width=50, height=50, crop=True)

    assert img.size == (50, 50)
    assert values["original_width"] == 300
    for xy in [(0, 0), (49, 0), (0, 49), (49, 49), (25, 25)]:
        assert close(img.getpixel(xy), GREEN), xy  # only the middle third is kept


def test_crop_of_a_tall_image_keeps_the_middle_rows(tmp_path):
    halves((100, 300), RED, BLUE, vertical=True).save(tmp_path / "src.png")

    _, _, img = thumb(tmp_path / "src.png", tmp_path, width=100, height=10, crop=True)

    assert img.size == (100, 10)
    assert close(img.getpixel((50, 2)), RED) and close(img.getpixel((50, 7)), BLUE)


def test_output_pixel_limit(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "small.png")

    with pytest.raises(TaskError, match="thumbnail would be 5000×5000"):
        make_thumbnail(tmp_path / "small.png", tmp_path, width=5000, height=5000, max_pixels=1_000_000)


@pytest.mark.parametrize(
    "options",
    [{"rotation": 45}, {"format": "bmp"}, {"width": 0}, {"height": -3}],
)
def test_bad_parameters(tmp_path, options):
    Image.new("RGB", (10, 10)).save(tmp_path / "src.png")
    arguments = {"width": 5, "height": 5, **options}

    with pytest.raises(TaskError):
        make_thumbnail(tmp_path / "src.png", tmp_path, **arguments)


# --- orientation and rotation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rotation", "size", "red_at", "blue_at"),
    [
        (0, (200, 100), (100, 10), (100, 90)),
        (90, (100, 200), (10, 100), (90, 100)),  # counter-clockwise: the top goes left
        (180, (200, 100), (100, 90), (100, 10)),
        (270, (100, 200), (90, 100), (10, 100)),
    ],
)
def test_rotation_is_counter_clockwise(tmp_path, rotation, size, red_at, blue_at):
    halves((200, 100), RED, BLUE, vertical=True).save(tmp_path / "src.png")

    _, values, img = thumb(tmp_path / "src.png", tmp_path, width=200, height=100, rotation=rotation, format="png")

    assert img.size == size
    assert (values["width"], values["height"]) == size
    assert (values["original_width"], values["original_height"]) == (200, 100)
    assert close(img.getpixel(red_at), RED) and close(img.getpixel(blue_at), BLUE)


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape, red on the left; orientation 6 shows it turned 90° clockwise: red on top.
    src = save_jpeg(halves((200, 100), RED, BLUE), tmp_path / "src.jpg", orientation=6)

    _, values, img = thumb(src, tmp_path, width=50, height=None)

    assert values == {"width": 50, "height": 100, "original_width": 100, "original_height": 200}
    assert img.size == (50, 100)
    assert close(img.getpixel((25, 10)), RED) and close(img.getpixel((25, 90)), BLUE)


def test_exif_orientation_then_rotation(tmp_path):
    src = save_jpeg(halves((200, 100), RED, BLUE), tmp_path / "src.jpg", orientation=6)

    _, _, img = thumb(src, tmp_path, rotation=90)

    assert img.size == (200, 100)  # upright portrait, then turned counter-clockwise
    assert close(img.getpixel((20, 50)), RED) and close(img.getpixel((180, 50)), BLUE)


# --- poster, formats, metadata ---------------------------------------------------------------


def test_poster_draws_a_play_icon(tmp_path):
    source_colour = (40, 120, 200)
    Image.new("RGB", (200, 100), source_colour).save(tmp_path / "src.png")

    _, _, img = thumb(tmp_path / "src.png", tmp_path, width=200, height=100, poster=True, format="png")

    assert img.size == (200, 100)
    assert min(img.getpixel((100, 50))) > 220  # white triangle in the centre
    disc = img.getpixel((100, 62))  # inside the dark disc, below the triangle
    assert all(d < s for d, s in zip(disc, source_colour))
    for corner in [(0, 0), (199, 0), (0, 99), (199, 99), (40, 50)]:
        assert img.getpixel(corner) == source_colour


def _transparent_square():
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((10, 10, 29, 29), fill=(255, 0, 0, 255))
    return img


@pytest.mark.parametrize(
    ("format", "ext", "pil_format", "mode"),
    [("jpeg", "jpg", "JPEG", "RGB"), ("png", "png", "PNG", "RGBA"), ("gif", "gif", "GIF", "P"), ("webp", "webp", "WEBP", "RGBA")],
)
def test_formats(tmp_path, format, ext, pil_format, mode):
    _transparent_square().save(tmp_path / "src.png")

    path, _, img = thumb(tmp_path / "src.png", tmp_path, width=20, height=20, format=format)

    assert path.name == f"output.{ext}"
    assert (img.format, img.mode, img.size) == (pil_format, mode, (20, 20))
    corner, centre = img.convert("RGBA").getpixel((0, 0)), img.convert("RGBA").getpixel((10, 10))
    assert close(centre, (255, 0, 0, 255))
    if format == "jpeg":
        assert close(corner, (*WHITE, 255), 25)  # transparency flattened onto white
    else:
        assert corner[3] == 0  # transparency kept


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "LA"])
def test_source_modes(tmp_path, mode):
    src = tmp_path / ("src.jpg" if mode == "CMYK" else "src.png")
    Image.new("RGB", (40, 20), WHITE).convert(mode).save(src)

    _, _, img = thumb(src, tmp_path, width=20, height=None)

    assert (img.mode, img.size) == ("RGB", (20, 10))
    assert close(img.getpixel((10, 5)), WHITE, 10)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.new("I;16", (40, 20), 0x8080).save(tmp_path / "src.png")

    _, _, img = thumb(tmp_path / "src.png", tmp_path, width=20, height=None, format="png")

    assert img.mode == "RGB"
    assert close(img.getpixel((10, 5)), (128, 128, 128), 2)


def test_output_carries_no_metadata(tmp_path):
    src = tmp_path / "src.jpg"
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    exif = img.getexif()
    exif[0x0110] = "Some Camera"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:01 12:34:56"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img.save(src, exif=exif, icc_profile=srgb, comment=b"secret")

    for format in ("jpeg", "png", "webp"):
        _, _, out = thumb(src, tmp_path, width=32, height=None, format=format)
        assert not {"exif", "icc_profile", "comment"} & set(out.info), format
        assert not out.getexif()
        assert close(out.convert("RGB").getpixel((16, 12)), (10, 200, 30), 10)


def test_unusable_icc_profile_is_ignored(tmp_path):
    Image.new("RGB", (20, 20), RED).save(tmp_path / "src.jpg", icc_profile=b"not a profile")

    _, _, img = thumb(tmp_path / "src.jpg", tmp_path, width=10, height=None)

    assert close(img.getpixel((5, 5)), RED)


# --- large JPEGs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    img = halves((4000, 3000), RED, BLUE)
    ImageDraw.Draw(img).rectangle((1900, 1400, 2099, 1599), fill=GREEN)  # a centre marker
    save_jpeg(img, path, orientation=6)
    return path


@pytest.fixture
def draft_sizes(monkeypatch):
    """The sizes JPEGs are decoded at, recorded from JpegImageFile.draft."""
    sizes = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return sizes


def test_large_jpeg_decodes_in_draft_mode(tmp_path, large_jpeg, draft_sizes):
    start = time.perf_counter()
    _, values, img = thumb(large_jpeg, tmp_path, width=240, height=None)
    elapsed = time.perf_counter() - start

    assert values == {"width": 240, "height": 320, "original_width": 3000, "original_height": 4000}
    assert draft_sizes == [(1000, 750)]  # 1/4 scale: 1/8 would not cover twice the 320×240 target
    assert close(img.getpixel((120, 40)), RED) and close(img.getpixel((120, 280)), BLUE)
    assert close(img.getpixel((120, 160)), GREEN)
    assert elapsed < 2


def test_large_jpeg_crop_in_draft_mode(tmp_path, large_jpeg, draft_sizes):
    _, values, img = thumb(large_jpeg, tmp_path, width=200, height=200, crop=True)

    assert (values["width"], values["height"]) == (200, 200)
    assert img.size == (200, 200)
    assert draft_sizes == [(1000, 750)]
    assert close(img.getpixel((100, 20)), RED) and close(img.getpixel((100, 180)), BLUE)
    assert close(img.getpixel((100, 100)), GREEN)


def test_large_jpeg_needing_every_pixel_is_decoded_in_full(tmp_path, large_jpeg, draft_sizes):
    _, _, img = thumb(large_jpeg, tmp_path, width=1000, height=1000, crop=True)

    assert img.size == (1000, 1000)
    assert draft_sizes == [(4000, 3000)]

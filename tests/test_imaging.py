"""The image steps without the service: probing (image.info), thumbnails (image.thumb), strips,
GIFs, analysis (faces, saliency, smart crops). Inputs are drawn here with Pillow, except the
real photographs faces are detected on (shipped with scikit-image)."""

import math
import struct
import time
import zlib

import pytest
import skimage.data
from PIL import Image, ImageCms, ImageDraw, ImageFile, ImageSequence, JpegImagePlugin, TiffImagePlugin

from flows.errors import FetchError, TaskError
from flows.settings import get_settings
from flows.steps.image.analysis import load_for_analysis
from flows.steps.image.faces import Face, detect_faces
from flows.steps.image.gif import make_gif
from flows.steps.image.imaging import make_thumbnail
from flows.steps.image.probe import about_source, probe_image, to_image_info
from flows.steps.image.saliency import salient_points
from flows.steps.image.smartcrop import smart_boxes, window_size
from flows.steps.image.strip import make_strip

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

    with pytest.raises(TaskError, match="output would be 5000×5000"):
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


# --- errors name the input -------------------------------------------------------------------


def test_about_source_names_the_url_but_not_twice():
    with pytest.raises(TaskError, match=r"^http://x/a.jpg: not a readable image$"):
        with about_source("http://x/a.jpg"):
            raise TaskError("not a readable image")
    with pytest.raises(FetchError, match=r"^could not fetch http://x/a.jpg: 404$"):
        with about_source("http://x/a.jpg"):
            raise FetchError("http://x/a.jpg", "404")


# --- strip -----------------------------------------------------------------------------------


def colours(tmp_path, *fills, size=(100, 50)):
    """One ``(label, path)`` PNG source per colour."""
    sources = []
    for i, fill in enumerate(fills):
        Image.new("RGB", size, fill).save(tmp_path / f"{i}.png")
        sources.append((f"http://in/{i}.png", tmp_path / f"{i}.png"))
    return sources


def strip(sources, tmp_path, **options):
    path, values = make_strip(sources, tmp_path / "out", **options)
    img = Image.open(path)
    img.load()
    return path, values, img


def test_strip_one_row(tmp_path):
    path, values, img = strip(colours(tmp_path, RED, GREEN, BLUE), tmp_path, width=60, height=30)

    assert values == {"count": 3, "width": 180, "height": 30, "content_type": "image/jpeg"}
    assert (path.name, img.format, img.size) == ("output.jpg", "JPEG", (180, 30))
    for i, colour in enumerate((RED, GREEN, BLUE)):
        assert close(img.getpixel((i * 60 + 30, 15)), colour)


def test_strip_wraps_into_a_grid(tmp_path):
    _, values, img = strip(colours(tmp_path, RED, GREEN, BLUE), tmp_path, width=40, height=20, wrap=2, format="png")

    assert (values["count"], values["width"], values["height"], values["content_type"]) == (3, 80, 40, "image/png")
    assert img.format == "PNG"
    assert img.getpixel((20, 10)) == RED and img.getpixel((60, 10)) == GREEN
    assert img.getpixel((20, 30)) == BLUE and img.getpixel((60, 30)) == (0, 0, 0)  # no fourth frame


def test_strip_fit_and_fill(tmp_path):
    # A square source in a 60×30 cell: fit leaves black bands left and right; fill keeps the middle rows.
    src = Image.new("RGB", (90, 90), RED)
    ImageDraw.Draw(src).rectangle((0, 20, 89, 69), fill=GREEN)  # the middle half and a bit
    src.save(tmp_path / "sq.png")
    sources = [("http://in/sq.png", tmp_path / "sq.png")]

    _, _, fit = strip(sources, tmp_path, width=60, height=30, format="png")
    assert fit.size == (60, 30)
    assert fit.getpixel((5, 15)) == (0, 0, 0) and fit.getpixel((54, 15)) == (0, 0, 0)
    assert close(fit.getpixel((30, 2)), RED) and close(fit.getpixel((30, 15)), GREEN)

    _, _, fill = strip(sources, tmp_path, width=60, height=30, crop=True, format="png")
    assert fill.size == (60, 30)
    for xy in [(0, 0), (59, 0), (30, 15), (0, 29), (59, 29)]:
        assert close(fill.getpixel(xy), GREEN), xy


def test_strip_cell_size_from_the_first_image(tmp_path):
    sources = colours(tmp_path, RED, BLUE)  # 100×50

    assert strip(sources, tmp_path)[1]["width"] == 200
    _, values, img = strip(sources, tmp_path, height=20)
    assert (values["width"], values["height"]) == (80, 20) == img.size
    # EXIF orientation 6 makes the first image upright 50×100
    save_jpeg(Image.new("RGB", (100, 50), RED), tmp_path / "turned.jpg", orientation=6)
    _, values, _ = strip([("http://in/t.jpg", tmp_path / "turned.jpg"), *sources], tmp_path, width=25)
    assert (values["width"], values["height"]) == (75, 50)


def test_strip_refused_over_the_pixel_limit_before_decoding(tmp_path, monkeypatch):
    sources = colours(tmp_path, RED, GREEN, BLUE)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels were decoded"))

    with pytest.raises(TaskError, match=r"the strip would be 300×100 = 30000 pixels, over the limit of 29999"):
        make_strip(sources, tmp_path, width=100, height=100, max_pixels=29_999)


def test_strip_error_names_the_bad_source(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    sources = [*colours(tmp_path, RED), ("http://in/bad.jpg", tmp_path / "bad.jpg")]

    with pytest.raises(TaskError, match=r"^http://in/bad.jpg: not a readable image"):
        make_strip(sources, tmp_path, width=10, height=10)


# --- gif -------------------------------------------------------------------------------------


def gif_frames(path):
    """``[(rgb of the centre pixel, duration ms)]`` of each frame, and the GIF's info."""
    with Image.open(path) as img:
        frames = []
        for frame in ImageSequence.Iterator(img):
            rgb = frame.convert("RGB")
            frames.append((rgb.getpixel((rgb.width // 2, rgb.height // 2)), frame.info["duration"]))
        return frames, img.info, img.size


def test_gif_frames_duration_and_endless_loop(tmp_path):
    path, values = make_gif(colours(tmp_path, RED, GREEN, BLUE), tmp_path / "out", frame_duration=0.123)

    frames, info, size = gif_frames(path)
    assert path.name == "output.gif" and size == (100, 50) and values == {"width": 100, "height": 50}
    assert [close(rgb, c) for (rgb, _), c in zip(frames, (RED, GREEN, BLUE))] == [True] * 3
    assert [d for _, d in frames] == [120] * 3  # rounded to 1/100 s
    assert info["loop"] == 0


@pytest.mark.parametrize(("loop", "expected"), [(-1, None), (3, 3)])
def test_gif_loop(tmp_path, loop, expected):
    path, _ = make_gif(colours(tmp_path, RED, BLUE), tmp_path / "out", loop=loop)

    assert gif_frames(path)[1].get("loop") == expected


def test_gif_size_and_centre_crop(tmp_path):
    wide = Image.new("RGB", (300, 100), RED)
    ImageDraw.Draw(wide).rectangle((100, 0, 199, 99), fill=GREEN)
    wide.save(tmp_path / "wide.png")
    sources = [*colours(tmp_path, BLUE, size=(100, 100)), ("http://in/wide.png", tmp_path / "wide.png")]

    path, values = make_gif(sources, tmp_path / "out", width=40)  # height from the first image: 40
    frames, _, size = gif_frames(path)
    assert size == (40, 40) and values == {"width": 40, "height": 40}
    assert close(frames[1][0], GREEN)  # the wide frame is cropped to its middle third
    with Image.open(path) as img:
        img.seek(1)
        rgb = img.convert("RGB")
        assert close(rgb.getpixel((1, 20)), GREEN) and close(rgb.getpixel((38, 20)), GREEN)

    path, _ = make_gif(sources, tmp_path / "out", width=30, height=20)
    assert gif_frames(path)[2] == (30, 20)


def animated(path, count, size=(20, 10)):
    frames = [Image.new("RGB", size, (10 * i % 256, 255 - 10 * i % 256, 0)) for i in range(count)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    return path


def test_gif_animated_input_contributes_its_frames(tmp_path):
    sources = [("http://in/anim.gif", animated(tmp_path / "anim.gif", 4)), *colours(tmp_path, BLUE, size=(20, 10))]

    path, _ = make_gif(sources, tmp_path / "out", frame_duration=0.05)

    frames, _, _ = gif_frames(path)
    assert len(frames) == 5
    assert close(frames[4][0], BLUE) and [d for _, d in frames] == [50] * 5


def test_gif_frames_are_bounded(tmp_path, monkeypatch):
    import flows.steps.image.gif as gif_step

    read = []
    original = gif_step.resize_upright
    monkeypatch.setattr(gif_step, "resize_upright", lambda *a, **k: read.append(1) or original(*a, **k))
    sources = [("http://in/long.gif", animated(tmp_path / "long.gif", 40))]

    # 20×10 frames under a cap of 600 pixels: three frames at most, found on reading the fourth
    with pytest.raises(TaskError, match=r"^http://in/long.gif: the GIF would have more than 3 frames"):
        make_gif(sources, tmp_path / "out", max_pixels=600)
    assert len(read) == 3
    monkeypatch.setattr(gif_step, "MAX_FRAMES", 10)
    with pytest.raises(TaskError, match="more than 10 frames"):
        make_gif(sources, tmp_path / "out")


@pytest.mark.parametrize(("options", "message"), [({"frame_duration": 0.004}, "at least 0.01"), ({"loop": -2}, "loop")])
def test_gif_bad_parameters(tmp_path, options, message):
    with pytest.raises(TaskError, match=message):
        make_gif(colours(tmp_path, RED), tmp_path / "out", **options)


# --- analysis image --------------------------------------------------------------------------


def test_analysis_image_is_reduced_and_maps_back(tmp_path):
    save_jpeg(Image.new("RGB", (4000, 2000), RED), tmp_path / "big.jpg", orientation=6)  # upright 2000×4000

    analysed = load_for_analysis(tmp_path / "big.jpg")

    assert analysed.original == (2000, 4000) and analysed.image.size == (512, 1024)
    assert analysed.image.mode == "RGB"
    assert analysed.region(128, 256, 256, 512) == {
        "x": 500, "y": 1000, "width": 1000, "height": 2000,
        "relative_x": 0.25, "relative_y": 0.25, "relative_width": 0.5, "relative_height": 0.5,
    }
    assert analysed.region(-10, 1000, 600, 100)["x"] == 0  # clipped to the image
    assert analysed.region(-10, 1000, 600, 100)["height"] == 4000 - 3906
    assert analysed.point(512, 1024) == {"x": 1999, "y": 3999, "relative_x": 0.9995, "relative_y": 0.9998}


def test_small_images_are_analysed_at_their_size(tmp_path):
    Image.new("RGBA", (300, 200), (0, 0, 0, 0)).save(tmp_path / "clear.png")

    analysed = load_for_analysis(tmp_path / "clear.png")

    assert analysed.image.size == (300, 200) and analysed.original == (300, 200)
    assert analysed.image.getpixel((5, 5)) == WHITE  # transparency flattened onto white


# --- faces (real photographs shipped with scikit-image) --------------------------------------


def photo(tmp_path, name, image, orientation=None):
    return save_jpeg(image.convert("RGB"), tmp_path / f"{name}.jpg", orientation)


def detect(path):
    analysed = load_for_analysis(path)
    return [analysed.region(f.x, f.y, f.width, f.height) | {"type": f.type, "confidence": f.confidence}
            for f in detect_faces(analysed.image)], analysed


def iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def box(face):
    return face["x"], face["y"], face["width"], face["height"]


ASTRONAUT_FACE = (170, 60, 100, 105)  # measured by eye on skimage.data.astronaut()


def test_face_on_a_real_photograph(tmp_path):
    faces, _ = detect(photo(tmp_path, "astronaut", Image.fromarray(skimage.data.astronaut())))

    assert len(faces) == 1
    assert iou(box(faces[0]), ASTRONAUT_FACE) > 0.5
    assert faces[0]["type"] == "frontal" and faces[0]["confidence"] > 0.95
    assert faces[0]["relative_x"] == round(faces[0]["x"] / 512, 4)


def test_turned_head_is_a_profile(tmp_path):
    faces, _ = detect(photo(tmp_path, "camera", Image.fromarray(skimage.data.camera())))

    assert len(faces) == 1
    assert iou(box(faces[0]), (190, 85, 70, 90)) > 0.4
    assert faces[0]["type"] == "profile"


def test_faces_are_found_upright_in_exif_rotated_photos(tmp_path):
    # Stored turned a quarter clockwise... and tagged 8 (turn it back counter-clockwise... to see it).
    stored = Image.fromarray(skimage.data.astronaut()).transpose(Image.Transpose.ROTATE_270)
    faces, analysed = detect(photo(tmp_path, "turned", stored, orientation=8))

    assert analysed.original == (512, 512) and len(faces) == 1
    assert iou(box(faces[0]), ASTRONAUT_FACE) > 0.5  # coordinates in the upright picture


def test_several_real_faces_and_none_on_other_photographs(tmp_path):
    lfw = skimage.data.lfw_subset()
    group = Image.new("RGB", (600, 260), (128, 128, 128))
    spots = [(20 + 100 * i, 40 + (i % 2) * 80) for i in range(6)]
    for patch, spot in zip(lfw[:6], spots):
        group.paste(Image.fromarray((patch * 255).astype("uint8")).resize((80, 80)), spot)

    faces, _ = detect(photo(tmp_path, "group", group))
    assert len(faces) == 6
    for spot in spots:
        assert any(iou(box(face), (*spot, 80, 80)) > 0.3 for face in faces), spot
    for name in ("chelsea", "coffee", "rocket"):
        assert detect(photo(tmp_path, name, Image.fromarray(getattr(skimage.data, name)())))[0] == [], name


def test_no_face_in_tiny_or_flat_images():
    assert detect_faces(Image.new("RGB", (10, 10))) == []
    assert detect_faces(Image.new("L", (200, 100), 90)) == []


# --- saliency --------------------------------------------------------------------------------


def test_salient_points_find_the_odd_spot(tmp_path):
    img = Image.new("RGB", (2000, 1000), (120, 140, 160))
    ImageDraw.Draw(img).ellipse((1350, 250, 1450, 350), fill=RED)  # centre (1400, 300)
    img.save(tmp_path / "spot.png")
    analysed = load_for_analysis(tmp_path / "spot.png")

    points = [analysed.point(x, y) | {"weight": w} for x, y, w in salient_points(analysed.image, 5)]

    assert 1 <= len(points) <= 5
    assert math.hypot(points[0]["x"] - 1400, points[0]["y"] - 300) < 60  # in source pixels
    assert points[0]["weight"] == 1.0
    assert [p["weight"] for p in points] == sorted((p["weight"] for p in points), reverse=True)
    assert points[0]["relative_x"] == pytest.approx(0.7, abs=0.03)


def test_salient_points_count_and_spread():
    img = Image.new("L", (640, 480), 128)
    draw = ImageDraw.Draw(img)
    spots = [(80, 80), (560, 80), (320, 240), (80, 400), (560, 400)]
    for x, y in spots:
        draw.rectangle((x - 12, y - 12, x + 12, y + 12), fill=255)

    points = salient_points(img, 5)
    assert len(points) == 5
    for x, y in spots:  # each spot has its point: peaks are spread, not piled on one spot
        assert min(math.hypot(px - x, py - y) for px, py, _ in points) < 30, (x, y)
    assert len(salient_points(img, 2)) == 2


# --- smart crop ------------------------------------------------------------------------------


def textured(size=(800, 400), patch=(40, 40, 240, 240)):
    """Flat grey with one square of noise (the only area with entropy)."""
    img = Image.new("L", size, 128)
    x0, y0, x1, y1 = patch
    img.paste(Image.effect_noise((x1 - x0, y1 - y0), 80), (x0, y0))
    return img.convert("RGB")


def crop(img, **options):
    arguments = {"aspect_ratio": 16 / 9, "boxes_number": 10, "step_ratio": 0.03, "diag_ratio": 0.3, **options}
    return smart_boxes(img, **arguments)


def inside(point, b):
    return b.x <= point[0] <= b.x + b.width and b.y <= point[1] <= b.y + b.height


def test_window_size():
    w, h = window_size((800, 600), 16 / 9, 0.3)
    assert w / h == pytest.approx(16 / 9) and math.hypot(w, h) == pytest.approx(300)
    assert window_size((100, 100), 4, 1.0) == pytest.approx((100, 25))  # shrunk to fit


def test_smartcrop_picks_the_textured_area_and_boxes_do_not_overlap():
    boxes = crop(textured())

    assert 1 < len(boxes) <= 10
    assert inside((140, 140), boxes[0])  # the most interesting box sits on the noise
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    for i, a in enumerate(boxes):
        assert a.width / a.height == pytest.approx(16 / 9, rel=0.03)
        assert math.hypot(a.width, a.height) == pytest.approx(0.3 * math.hypot(800, 400), rel=0.02)
        for b in boxes[i + 1:]:
            assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y


def test_smartcrop_reverse_and_boxes_number():
    boxes = crop(textured(), reverse=True, boxes_number=3)

    assert len(boxes) == 3
    assert boxes[0].score == 0 and not inside((140, 140), boxes[0])  # flat grey first
    assert [b.score for b in boxes] == sorted(b.score for b in boxes)


def test_smartcrop_step_ratio():
    boxes = crop(textured(), step_ratio=0.5, boxes_number=100)

    room = 800 - boxes[0].width
    assert {round(b.x) for b in boxes} <= {0, 400, round(room)}  # starts every half width, or flush right
    assert len(crop(textured(), step_ratio=0.01, boxes_number=100)) >= len(boxes)


def test_smartcrop_faces_outweigh_texture():
    face = Face(x=600, y=250, width=60, height=60, confidence=0.99, type="frontal")

    boxes = crop(textured(), faces=[face])

    first = boxes[0]
    assert first.x <= 600 and first.x + first.width >= 660 and first.y <= 250 and first.y + first.height >= 310
    assert first.score == pytest.approx(0.99, abs=0.005)  # flat grey (entropy 0) plus one whole face
    assert inside((140, 140), boxes[1])  # then the texture


def test_smartcrop_focal_point_overrides():
    face = Face(x=600, y=250, width=60, height=60, confidence=0.99, type="frontal")

    boxes = crop(textured(), faces=[face], focal_point=(0.5, 0.1))

    assert inside((400, 40), boxes[0])
    centres = [math.hypot(b.x + b.width / 2 - 400, b.y + b.height / 2 - 40) for b in boxes]
    assert centres == sorted(centres)

"""video.create's renderer on generated media, without the service: timing to the frame,
profile size and rate, colours at the expected times, crossfade blends, smooth Ken Burns
motion, overlay and text placement, a video's last frame held, sliding effects."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flows.create import modifiers, render, sxml, timeline
from flows.create.profiles import Profile
from flows.create.render import Media, preview_profile

W, H, FPS = 160, 90, Fraction(10)
TINY = Profile("tiny", W, H, FPS)
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def movie(body: str) -> str:
    return f'<movie service="craftsman-1.0"><body>{body}</body></movie>'


def render_definition(tmp_path: Path, xml: str, files: dict[str, Path], *, lengths=None, profile=TINY,
                      antialias: int = 1):
    definition = sxml.parse(xml)
    plan = timeline.plan(definition.movie, lengths or {})
    probes = {}
    for url in files:
        if url.endswith(".mp4"):
            from flows.steps.tools.probe import probe_media
            probes[url] = asyncio.run(probe_media(files[url]))
    out = tmp_path / "out.mp4"
    command = asyncio.run(render.render_movie(plan, Media(files=dict(files), probes=probes), profile, out,
                                              tmp_path / "work", antialias=antialias, preset="ultrafast", crf=12))
    return plan, command, out


def stream_info(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json",
                          str(path)], capture_output=True, check=True).stdout
    return json.loads(out)


def frames(path: Path, width: int = W, height: int = H) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).astype(float)


def at(video: np.ndarray, seconds: float, fps: Fraction = FPS) -> np.ndarray:
    return video[int(seconds * fps)]


def mean_colour(frame: np.ndarray, box=None) -> np.ndarray:
    if box is not None:
        x0, y0, x1, y1 = box
        frame = frame[y0:y1, x0:x1]
    return frame.reshape(-1, 3).mean(axis=0)


def close(colour, expected, tolerance=30) -> bool:
    return bool(np.all(np.abs(np.asarray(colour) - np.asarray(expected)) < tolerance))


@pytest.fixture
def pictures(tmp_path):
    made = {}

    def make(name: str, colour=None, size=(200, 120), draw=None) -> tuple[str, Path]:
        path = tmp_path / name
        image = Image.new("RGB", size, colour or (0, 0, 0))
        if draw:
            draw(image)
        image.save(path)
        url = f"https://example.com/{name}"
        made[url] = path
        return url, path

    make.files = made
    return make


def test_two_pictures_in_sequence_timing_size_and_colours(tmp_path, pictures):
    red, _ = pictures("red.jpg", RED)
    blue, _ = pictures("blue.png", BLUE, size=(90, 160))  # portrait: cover-cropped
    xml = movie(f'<effect type="none" duration="1.5"><image filename="{red}"/></effect>'
                f'<effect type="none" duration="1.5"><image filename="{blue}"/></effect>')
    plan, _, out = render_definition(tmp_path, xml, pictures.files)
    assert plan.duration == 3.0
    info = stream_info(out)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["width"], video["height"], video["pix_fmt"]) == (W, H, "yuv420p")
    assert Fraction(video["r_frame_rate"]) == FPS
    assert abs(int(video["nb_read_frames"]) - 30) <= 1
    assert abs(float(info["format"]["duration"]) - 3.0) <= 1 / FPS + 0.03
    assert audio["codec_name"] == "aac"
    decoded = frames(out)
    assert close(mean_colour(at(decoded, 0.5)), RED)
    assert close(mean_colour(at(decoded, 2.5)), BLUE)
    assert close(mean_colour(at(decoded, 1.4)), RED) and close(mean_colour(at(decoded, 1.6)), BLUE)


def test_crossfade_middle_frame_is_a_blend(tmp_path, pictures):
    red, _ = pictures("red.jpg", RED)
    xml = movie(f'<effect type="none" duration="2"><image filename="{red}"/></effect>'
                '<transition type="crossfade" duration="1"/>'
                '<effect type="none" duration="2"><image color="#0000ff"/></effect>')
    plan, _, out = render_definition(tmp_path, xml, pictures.files)
    assert plan.duration == 3.0
    decoded = frames(out)
    assert abs(len(decoded) - 30) <= 1
    assert close(mean_colour(at(decoded, 0.5)), RED) and close(mean_colour(at(decoded, 2.5)), BLUE)
    middle = mean_colour(at(decoded, 1.5))
    assert 80 < middle[0] < 180 and 80 < middle[2] < 180, middle
    reds = [mean_colour(f)[0] for f in decoded[10:21]]
    assert all(a >= b - 3 for a, b in zip(reds, reds[1:])), reds  # red fades out monotonically


def _dots(image: Image.Image) -> None:
    draw = ImageDraw.Draw(image)
    for cx in (60, 140):
        draw.ellipse((cx - 6, 54, cx + 6, 66), fill=(255, 255, 255))


def _centroids(frame: np.ndarray) -> tuple[float, float]:
    """x centroids of the bright pixels in the left and right halves."""
    luma = frame.mean(axis=2)
    weights = np.clip(luma - 60, 0, None)
    xs = np.arange(frame.shape[1])
    half = frame.shape[1] // 2
    left = (weights[:, :half].sum(axis=0) * xs[:half]).sum() / weights[:, :half].sum()
    right = (weights[:, half:].sum(axis=0) * xs[half:]).sum() / weights[:, half:].sum()
    return left, right


@pytest.mark.parametrize("direction", ["positive", "negative"])
def test_kenburns_moves_smoothly_and_monotonically(tmp_path, pictures, direction):
    url, _ = pictures("dots.png", (40, 40, 40), size=(200, 120), draw=_dots)
    xml = movie(f'<effect type="kenburns" direction="{direction}" duration="3"><image filename="{url}"/></effect>')
    _, _, out = render_definition(tmp_path, xml, pictures.files)
    spreads = [right - left for left, right in map(_centroids, frames(out))]
    steps = np.diff(spreads)
    sign = 1 if direction == "positive" else -1  # zooming in spreads the dots apart
    assert sign * (spreads[-1] - spreads[0]) > 6, spreads
    assert np.all(sign * steps > -0.05), steps  # monotonic
    # smooth: every step close to the mean step (integer-rounded crops give 0/1-pixel steps)
    mean = abs(np.mean(steps))
    assert np.all(np.abs(np.abs(steps) - mean) < 0.6 * mean + 0.05), steps


def test_adapter_filters_set_the_move_or_hold_the_picture(tmp_path, pictures):
    """A ``kenburnsAdapter`` with zoom 1 -> 2 about the centre doubles the dots' spread on a
    still effect; a ``fixedAdapter`` holds a kenburns picture still."""
    url, _ = pictures("dots.png", (40, 40, 40), size=(200, 120), draw=_dots)
    xml = movie(f'<effect type="none" duration="2"><image filename="{url}"/>'
                '<filter type="kenburnsAdapter" zoomStart="1" zoomEnd="2" centerStart="0.5,0.5" centerEnd="0.5,0.5"/>'
                f'</effect><effect type="kenburns" duration="2"><image filename="{url}">'
                '<filter type="fixedAdapter"/></image></effect>')
    _, command, out = render_definition(tmp_path, xml, pictures.files)
    assert not command.warnings
    spots = [_centroids(frame) for frame in frames(out)]
    spreads = [right - left for left, right in spots]
    assert spreads[0] == pytest.approx(64, abs=2) and spreads[19] == pytest.approx(128, abs=4), spreads
    assert sum(spots[19]) / 2 == pytest.approx(80, abs=2)  # about the centre
    assert max(spreads[20:]) - min(spreads[20:]) < 1, spreads[20:]


def test_overlay_lands_in_its_box_and_text_in_its_zone(tmp_path, pictures):
    red, _ = pictures("logo.png", RED, size=(100, 50))
    xml = movie('<stack duration="2"><effect type="none"><image color="#0000ff"/></effect>'
                f'<overlay left="0.25" top="0.2" width="0.5" height="0.4"><image filename="{red}"/></overlay>'
                '<text type="zone" left="0.1" right="0.1" top="0.7" bottom="0.05" fontcolor="#ffffff"'
                ' fontsize="60">Hi</text></stack>')
    _, _, out = render_definition(tmp_path, xml, pictures.files)
    frame = at(frames(out), 1.0)
    assert close(mean_colour(frame, (44, 22, 116, 50)), RED)  # inside the box (40..120, 18..54)
    assert close(mean_colour(frame, (0, 0, 36, 60)), BLUE)  # left of it
    assert close(mean_colour(frame, (124, 0, 160, 60)), BLUE)  # right of it
    white = frame.min(axis=2) > 150
    ys, xs = np.nonzero(white)
    assert len(xs) > 20
    assert ys.min() >= 60 and ys.max() <= 87 and xs.min() >= 14 and xs.max() <= 146  # zone (16..144, 63..86)


def test_video_last_frame_is_held_in_a_longer_slot(tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=80x60:r=10:d=0.5",
                    "-f", "lavfi", "-i", "color=c=green:s=80x60:r=10:d=0.5", "-filter_complex",
                    "[0][1]concat=n=2:v=1", "-pix_fmt", "yuv420p", str(clip)], check=True)
    url = "https://example.com/clip.mp4"
    xml = movie(f'<effect type="none" duration="2.5"><video filename="{url}" audio="false"/></effect>'
                '<effect type="none" duration="1"><image color="#0000ff"/></effect>')
    plan, _, out = render_definition(tmp_path, xml, {url: clip}, lengths={url: 1.0})
    decoded = frames(out)
    assert abs(len(decoded) - 35) <= 1
    assert close(mean_colour(at(decoded, 0.2)), RED)
    assert close(mean_colour(at(decoded, 0.8)), (0, 128, 0), 40)
    assert close(mean_colour(at(decoded, 2.2)), (0, 128, 0), 40)  # held
    assert close(mean_colour(at(decoded, 3.0)), BLUE)


def test_move_transition_and_sliding_effect_keep_the_timeline(tmp_path, pictures):
    red, _ = pictures("r.jpg", RED)
    green, _ = pictures("g.jpg", GREEN)
    xml = movie(f'<effect type="sliding" duration="4"><image filename="{red}"/><image filename="{green}"/></effect>'
                '<transition type="move" direction="left" duration="1"/>'
                '<effect type="none" duration="2"><image color="#0000ff"/></effect>')
    plan, _, out = render_definition(tmp_path, xml, pictures.files)
    assert plan.duration == 5.0
    decoded = frames(out)
    assert abs(len(decoded) - 50) <= 1
    assert close(mean_colour(at(decoded, 1.0)), RED)
    entering = at(decoded, 2.3)  # the second picture slides in from the right over the first
    assert close(mean_colour(entering, (0, 0, 30, H)), RED, 60) and close(mean_colour(entering, (130, 0, W, H)), GREEN, 60)
    assert close(mean_colour(at(decoded, 2.8)), GREEN)
    assert close(mean_colour(at(decoded, 4.5)), BLUE)
    sliding = at(decoded, 3.5)  # mid-move: green on the left, blue coming in on the right
    assert close(mean_colour(sliding, (0, 0, 30, H)), GREEN, 60) and close(mean_colour(sliding, (130, 0, W, H)), BLUE, 60)


def test_preview_profile_is_small_and_even():
    from flows.create.profiles import profile

    small = preview_profile(profile("720p"))
    assert small.height <= render.PREVIEW_HEIGHT and small.width % 2 == 0 and small.height % 2 == 0
    assert small.fps <= render.PREVIEW_FPS
    assert abs(small.width / small.height - 16 / 9) < 0.02


def test_an_undecodable_image_is_an_invalid_image_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    url = "https://example.com/bad.jpg"
    with pytest.raises(sxml.InvalidImageError, match=r"^InvalidImageError: line 1: .*bad\.jpg"):
        render_definition(tmp_path, movie(f'<effect type="none"><image filename="{url}"/></effect>'), {url: bad})


def _solid_clip(path: Path, rgb: tuple[int, int, int], matrix: str) -> None:
    """A 1 s clip of one colour, encoded and tagged in ``matrix`` (bt601 / bt709), limited range."""
    tag = {"bt601": "smpte170m", "bt709": "bt709"}[matrix]
    colour = "0x{:02X}{:02X}{:02X}".format(*rgb)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s=64x48:r=10:d=1",
                    "-vf", f"format=rgb24,scale=out_color_matrix={matrix}:out_range=tv,format=yuv420p",
                    "-colorspace", tag, "-color_primaries", tag, "-color_trc", tag, "-color_range", "tv",
                    "-c:v", "libx264", "-qp", "0", str(path)], check=True)


def test_colours_are_bt709_and_the_file_says_so(tmp_path, pictures):
    """Inputs in BT.601 (tagged video, JPEG) and BT.709 come out with their colours in a file
    tagged BT.709 limited range: a player decoding by the tags sees the input's RGB."""
    rgb = (200, 60, 40)  # saturated: BT.601 data read as BT.709 would be ~15 levels off
    jpeg, _ = pictures("solid.jpg", rgb)
    clips = {}
    for matrix in ("bt601", "bt709"):
        clips[f"https://example.com/{matrix}.mp4"] = tmp_path / f"{matrix}.mp4"
        _solid_clip(tmp_path / f"{matrix}.mp4", rgb, matrix)
    xml = movie(''.join(f'<effect type="none" duration="1"><video filename="{url}" audio="false"/></effect>'
                        for url in clips)
                + f'<effect type="none" duration="1"><image filename="{jpeg}"/></effect>'
                  '<effect type="none" duration="1"><image color="#c83c28"/></effect>')
    _, _, out = render_definition(tmp_path, xml, {**pictures.files, **clips}, lengths=dict.fromkeys(clips, 1.0))
    video = next(s for s in stream_info(out)["streams"] if s["codec_type"] == "video")
    assert (video["color_space"], video["color_primaries"], video["color_transfer"], video["color_range"]) == (
        "bt709", "bt709", "bt709", "tv")
    decoded = frames(out)
    for seconds in (0.5, 1.5, 2.5, 3.5):  # BT.601 video, BT.709 video, JPEG, colour plate
        colour = mean_colour(at(decoded, seconds), (8, 8, W - 8, H - 8))
        assert close(colour, rgb, 7), (seconds, colour)


def _box_extent(frame: np.ndarray) -> tuple[int, int, float, float]:
    """Width, height and centre of the red pixels of ``frame``."""
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)
    ys, xs = np.nonzero(red)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1), xs.mean(), ys.mean()


def test_grow_scale_keys_and_rot_in_animate_an_overlay(tmp_path):
    """``grow`` 0 -> 1 doubles an overlay about its centre (camera 2 units away); ``custom``
    scale keys shrink one; ``rot-in`` turns a wide bar into place."""
    box = 'left="0.4" width="0.2" top="0.4" height="0.2"'
    xml = movie(f'<stack duration="2"><effect type="none"><image color="#000000"/></effect>'
                f'<overlay {box}><image color="#ff0000"/><animator type="grow" growStart="0" growEnd="1"/></overlay>'
                '</stack>'
                f'<stack duration="2"><effect type="none"><image color="#000000"/></effect>'
                f'<overlay {box}><image color="#ff0000"/><animator type="custom"><key time="0" scale="1,1,1"/>'
                '<key time="2" scale="0.5,1,1"/></animator></overlay></stack>'
                f'<stack duration="2"><effect type="none"><image color="#000000"/></effect>'
                '<overlay left="0.3" width="0.4" top="0.45" height="0.1"><image color="#ff0000"/>'
                '<animator type="rot-in" angle="90" duration="1"/></overlay></stack>')
    plan, command, out = render_definition(tmp_path, xml, {})
    assert plan.duration == 6.0 and not command.warnings
    decoded = frames(out)
    widths = [_box_extent(decoded[i])[0] for i in range(0, 20)]
    assert abs(widths[0] - 32) <= 2 and abs(widths[19] - 64) <= 3, widths  # 0.2 x 160 -> twice as big
    assert all(b >= a - 1 for a, b in zip(widths, widths[1:])), widths  # grows steadily
    w0, h0, cx0, cy0 = _box_extent(decoded[1])
    w1, h1, cx1, cy1 = _box_extent(decoded[19])
    assert abs(cx1 - cx0) < 1.5 and abs(cy1 - cy0) < 1.5 and h1 > 1.7 * h0  # about its centre
    start, end = _box_extent(decoded[20]), _box_extent(decoded[39])
    assert abs(start[0] - 32) <= 2 and abs(end[0] - 17) <= 3 and abs(end[1] - start[1]) <= 2  # x halves only
    turned, placed = _box_extent(decoded[40]), _box_extent(decoded[55])
    assert turned[1] > 2 * turned[0]  # the wide bar starts upright (90 degrees)
    assert abs(placed[0] - 64) <= 2 and abs(placed[1] - 9) <= 2  # then lies in its box


def test_custom_keys_move_linearly_or_eased_in_quadratic_mode(tmp_path):
    """A box keyed from pos 0 to pos 1 (half the frame height, 45 px) over 2 s: a quarter of
    the way at 0.5 s in the default mode; an eighth with ``mode="quadratic"`` (ease-in-out),
    halfway at 1 s in both, seven eighths at 1.5 s eased."""
    keys = '<key time="0" pos="0,0,0"/><key time="2" pos="1,0,0"/>'
    xml = movie(''.join(
        f'<stack duration="2"><effect type="none"><image color="#000000"/></effect>'
        f'<overlay left="0.1" width="0.1" top="0.4" height="0.2"><image color="#ff0000"/>'
        f'<animator type="custom"{mode}>{keys}</animator></overlay></stack>'
        for mode in ("", ' mode="quadratic"')))
    plan, command, out = render_definition(tmp_path, xml, {})
    assert plan.duration == 4.0 and not command.warnings
    decoded = frames(out)
    for first, expected in ((0, (0.25, 0.5, 0.75)), (20, (0.125, 0.5, 0.875))):
        x0 = _box_extent(decoded[first])[2]
        moved = [(_box_extent(decoded[first + i])[2] - x0) / 45 for i in (5, 10, 15)]
        assert moved == pytest.approx(expected, abs=0.05), (first, moved)


def test_rot_keys_about_the_y_and_x_axes_turn_the_node_in_depth(tmp_path):
    """A 48 × 30 px box turned about y by 0 -> 60 degrees narrows to about half its width and
    its nearer edge grows taller than the farther one; about x it gets shorter, not narrower;
    ``orient`` keys about y turn it the same way (the short way round between keys); no
    warning."""
    box = 'left="0.35" width="0.3" top="0.33" height="0.33"'

    def turned(axis: str) -> str:
        return (f'<stack duration="2"><effect type="none"><image color="#000000"/></effect>'
                f'<overlay {box}><image color="#ff0000"/><animator type="custom">'
                f'<key time="0" rot="0,{axis}"/><key time="2" rot="60,{axis}"/></animator></overlay></stack>')

    oriented = turned("0,1,0").replace('rot="0,0,1,0"', 'orient="0,0,0"').replace('rot="60,0,1,0"', 'orient="0,60,0"')
    plan, command, out = render_definition(tmp_path, movie(turned("0,1,0") + turned("1,0,0") + oriented), {})
    assert plan.duration == 6.0 and not command.warnings
    decoded = frames(out)
    (w0, h0, cx0, cy0), (w1, h1, cx1, cy1) = _box_extent(decoded[0]), _box_extent(decoded[19])
    assert abs(w0 - 48) <= 2 and abs(h0 - 30) <= 2
    assert 0.4 * w0 <= w1 <= 0.65 * w0 and abs(cx1 - cx0) < 4, (w0, w1, cx0, cx1)
    red = (decoded[19][..., 0] > 150) & (decoded[19][..., 1] < 100)
    xs = np.nonzero(red.any(axis=0))[0]
    left, right = red[:, xs[0] + 1].sum(), red[:, xs[-1] - 1].sum()
    assert max(left, right) >= min(left, right) + 3, (left, right)  # perspective: one edge is nearer
    (w2, h2, _, _), (w3, h3, _, _) = _box_extent(decoded[20]), _box_extent(decoded[39])
    assert abs(w2 - 48) <= 2 and 0.4 * h2 <= h3 <= 0.65 * h2 and w3 >= w2 - 2, (w2, h2, w3, h3)
    assert _box_extent(decoded[59])[:2] == pytest.approx((w1, h1), abs=1)  # orient about y: the same turn
    assert modifiers._shortest([(0, 0.0), (1, math.radians(350))]) == [(0, 0.0), (1, pytest.approx(math.radians(-10)))]


def test_tint_and_threetint_colour_by_brightness(tmp_path):
    """``tint`` maps black -> blackColor and white -> whiteColor by luma; ``threetint`` passes
    through mediumColor at mid grey."""
    def tinted(color: str, kind: str, extra: str = "") -> str:
        return (f'<effect type="none" duration="1"><image color="{color}"/>'
                f'<filter type="{kind}" blackColor="#000080" whiteColor="#ffff00"{extra}/></effect>')

    xml = movie(tinted("#ffffff", "tint") + tinted("#ff0000", "tint") + tinted("#000000", "tint")
                + tinted("#808080", "threetint", ' mediumColor="#ff0000"'))
    _, command, out = render_definition(tmp_path, xml, {})
    assert not command.warnings
    decoded = frames(out)
    red_luma = 0.2126 * 255 / 255
    expected = [(255, 255, 0), (255 * red_luma, 255 * red_luma, 128 - 128 * red_luma), (0, 0, 128), (255, 0, 0)]
    for second, colour in zip((0.5, 1.5, 2.5, 3.5), expected):
        seen = mean_colour(at(decoded, second))
        assert close(seen, colour, 14), (second, seen, colour)


def test_colormaps_and_the_chroma_key(tmp_path, pictures):
    """``colormap``: negative (on a picture too), black & white, low contrast, a matrix swapping
    red and blue; ``key`` makes its colour transparent, showing the node below."""
    red, _ = pictures("red.png", (255, 0, 0))

    def mapped(extra: str, image: str = '<image color="#ff0000"/>') -> str:
        return f'<effect type="none" duration="1">{image}<filter type="colormap"{extra}/></effect>'

    swap = ' rgba-bias-matrix="#0000FF00,#00FF0000,#FF000000,#000000FF,#00000000"'
    keyed = ('<stack duration="1"><effect type="none"><image color="#0000ff"/></effect>'
             '<effect type="none"><image color="#00ff00"/><filter type="key" color="#00ff00"/></effect></stack>')
    xml = movie(mapped(' preset="negative"') + mapped(' preset="negative"', f'<image filename="{red}"/>')
                + mapped("") + mapped(' preset="lowContrast"', '<image color="#ffffff"/>') + mapped(swap) + keyed)
    _, command, out = render_definition(tmp_path, xml, pictures.files)
    assert not command.warnings
    decoded = frames(out)
    expected = [(0, 255, 255), (0, 255, 255), (54, 54, 54), (191, 191, 191), (0, 0, 255), (0, 0, 255)]
    for second, colour in zip((0.5, 1.5, 2.5, 3.5, 4.5, 5.5), expected):
        seen = mean_colour(at(decoded, second))
        assert close(seen, colour, 16), (second, seen, colour)


def test_masks_cut_a_node_by_the_luma_alpha_or_colours_of_their_image(tmp_path, pictures):
    """A red node over a blue one, masked by a picture white (or opaque) on its left half:
    ``lumamask`` and ``alphamask`` keep the left half red, ``lumainvmask`` the right half,
    ``mask`` with ``opaqueColor`` picks the red half of a red/green picture; a mask filter
    with no picture is ignored with a warning."""
    def halves(left, right, mode="RGB"):
        def draw(image):
            image.paste(left, (0, 0, 100, 120))
            image.paste(right, (100, 0, 200, 120))
        return draw

    luma, _ = pictures("luma.png", draw=halves((255, 255, 255), (0, 0, 0)))
    colours, _ = pictures("colours.png", draw=halves((255, 0, 0), (0, 255, 0)))
    alpha_url = "https://example.com/alpha.png"
    pictures.files[alpha_url] = tmp_path / "alpha.png"
    cut = Image.new("RGBA", (200, 120), (90, 90, 90, 255))
    cut.paste((90, 90, 90, 0), (100, 0, 200, 120))
    cut.save(tmp_path / "alpha.png")

    def masked(kind: str, url: str | None, extra: str = "") -> str:
        inside = f'<image filename="{url}"/>' if url else ""
        return ('<stack duration="1"><effect type="none"><image color="#0000ff"/></effect>'
                f'<effect type="none"><image color="#ff0000"/><filter type="{kind}"{extra}>{inside}</filter>'
                '</effect></stack>')

    xml = movie(masked("lumamask", luma) + masked("lumainvmask", luma) + masked("alphamask", alpha_url)
                + masked("mask", colours, ' opaqueColor="#ff0000" transparentColor="#00ff00"')
                + masked("lumamask", None))
    _, command, out = render_definition(tmp_path, xml, pictures.files)
    assert command.warnings == ('line 1: <filter type="lumamask"> needs an <image> (a picture or a color) to mask'
                                ' with: ignored',)
    decoded = frames(out)
    left, right = (8, 8, W // 2 - 8, H - 8), (W // 2 + 8, 8, W - 8, H - 8)
    red, blue = (255, 0, 0), (0, 0, 255)
    for second, expected in ((0.5, (red, blue)), (1.5, (blue, red)), (2.5, (red, blue)), (3.5, (red, blue)),
                             (4.5, (red, red))):
        seen = mean_colour(at(decoded, second), left), mean_colour(at(decoded, second), right)
        assert close(seen[0], expected[0]) and close(seen[1], expected[1]), (second, seen)


def test_a_long_movie_renders_in_windows_exactly_as_in_one_graph(tmp_path, pictures):
    """Windows (chunks.py) cut where nothing changes: Ken Burns pictures, captions and a logo
    spanning the cuts, transitions kept whole; the result matches the one-graph render to the
    frame, with its sound and colour tags."""
    from flows.create import chunks

    urls = [pictures(f"p{i}.png", draw=_dots, colour=(40 + 50 * i, 90, 200 - 40 * i))[0] for i in range(4)]
    logo, _ = pictures("logo.png", GREEN, size=(40, 20))
    tone = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=8", str(tone)], check=True)
    items = [f'<stack duration="2"><effect type="kenburns"><image filename="{url}"/></effect>'
             f'<text type="legend">Caption {i}</text></stack>' for i, url in enumerate(urls)]
    xml = movie('<stack><sequence>' + '<transition type="crossfade" duration="0.5"/>'.join(items) + '</sequence>'
                f'<overlay top="0" right="0" height="0.2"><image filename="{logo}"/></overlay>'
                '<audio filename="https://example.com/tone.wav" duration=".."/></stack>')
    files = {**pictures.files, "https://example.com/tone.wav": tone}
    plan = timeline.plan(sxml.parse(xml).movie, {"https://example.com/tone.wav": 8.0})
    assert plan.duration == 6.5
    windows = chunks.windows(plan, FPS, 1.0)
    assert len(windows) >= 4 and windows[0][0] == 0 and windows[-1][1] == 65
    for transition in plan.transitions:  # no cut inside a transition
        assert not any(round(transition.start * 10) <= end <= round(transition.end * 10) for _, end in windows)
    media = Media(files=files)
    outputs, reports = {}, []

    async def progress(percent: float) -> None:
        reports.append(percent)

    for name, seconds in (("one", 60.0), ("windows", 1.0)):
        command = render.build(plan, media, TINY, tmp_path / f"{name}.mp4", tmp_path / f"work-{name}",
                               antialias=1, preset="ultrafast", crf=12, chunk_seconds=seconds)
        assert len(command.steps) == (1 if name == "one" else len(windows) + 1)
        outputs[name] = asyncio.run(render.run(command, progress if name == "windows" else None))
    assert reports and reports == sorted(reports) and 0 <= reports[0] and reports[-1] <= 100  # over all steps
    info = stream_info(outputs["windows"])
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 65 and video["color_space"] == "bt709"
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    assert abs(float(info["format"]["duration"]) - 6.5) <= 1 / FPS + 0.03
    one, chunked = frames(outputs["one"]), frames(outputs["windows"])
    assert one.shape == chunked.shape
    difference = np.abs(one - chunked).mean(axis=(1, 2, 3))
    assert difference.max() < 3, difference  # the same pictures (encoder noise only)
    spreads = [right - left for left, right in map(_centroids, chunked[5:15])]  # Ken Burns across a cut
    assert all(b > a - 0.05 for a, b in zip(spreads, spreads[1:])), spreads

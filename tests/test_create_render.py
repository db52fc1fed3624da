"""video.create's renderer on generated media, without the service: timing to the frame,
profile size and rate, colours at the expected times, crossfade blends, smooth Ken Burns
motion, overlay and text placement, a video's last frame held, sliding effects."""

from __future__ import annotations

import asyncio
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flows.create import render, sxml, timeline
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

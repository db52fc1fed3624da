"""Video tasks: the steps on generated clips (sizes, seeking, strips, reversing in segments,
playlist refusal) and the tasks end to end through the API and the CLI.

The main test clip shows one flat colour per frame (frame N: red 4N, green 255-4N) at 10 fps,
so the frame an image shows is read back from its colour."""

from __future__ import annotations

import array
import io
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageStat

from flows.errors import TaskError
from flows.steps.tools.ffmpeg import ffmpeg_timeout, input_args, run_ffmpeg
from flows.steps.tools.probe import content_type, probe_media
from flows.steps.video.encode import Encoding
from flows.steps.video.frames import grab_frame, grid, strip_times
from flows.steps.video.reverse import reverse_video, segment_seconds
from flows.steps.video.scaling import output_size

FPS = 10
SECONDS = 6


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_colour_clip(path: Path, *, audio: bool = True, seconds: int = SECONDS, size: str = "160x120") -> Path:
    """Frame N is flat (4N, 255-4N, 128); a 440 Hz tone plays during the first 2 s."""
    video = ["-f", "lavfi", "-i", f"color=c=black:s={size}:r={FPS}:d={seconds},geq=r='N*4':g='255-N*4':b=128"]
    sound = ["-f", "lavfi", "-i", f"aevalsrc=0.5*sin(2*PI*440*t)*lt(t\\,2):d={seconds}:s=44100"] if audio else []
    codecs = ["-c:a", "aac", "-shortest"] if audio else []
    ffmpeg(*video, *sound, "-c:v", "libx264", "-g", "10", "-crf", "5", "-pix_fmt", "yuv420p", *codecs, str(path))
    return path


def frame_index(image: Image.Image) -> float:
    """Which frame of the colour clip ``image`` shows (from its mean red and green)."""
    r, g, _ = ImageStat.Stat(image.convert("RGB")).mean
    return (r / 4 + (255 - g) / 4) / 2


def loudness(path: Path) -> list[float]:
    """RMS level of each second of ``path``'s audio (mono, 8 kHz)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-f", "s16le", "-ac", "1", "-ar", "8000", "-"],
        check=True, capture_output=True,
    ).stdout
    samples = array.array("h", raw)
    return [
        (sum(x * x for x in samples[i:i + 8000]) / len(samples[i:i + 8000])) ** 0.5
        for i in range(0, len(samples) - 4000, 8000)
    ]


def frames_of(path: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(out.strip())


def decode_frame(path: Path, frame: int = 0) -> Image.Image:
    """Frame number ``frame`` of ``path`` (a constant 10 fps clip) as a Pillow image."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{max(0.0, frame / FPS - 0.02):.3f}", "-i", str(path),
         "-frames:v", "1", "-f", "image2", "-c:v", "png", "-"],
        check=True, capture_output=True,
    ).stdout
    return Image.open(io.BytesIO(out))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {
        "colour": make_colour_clip(root / "colour.mp4"),
        "silent": make_colour_clip(root / "silent.mp4", audio=False),
        "root": root,
    }


# --- steps -----------------------------------------------------------------------------


def test_output_size_fit_crop_and_even():
    assert output_size((1280, 720), 640, None, False) == (640, 360)
    assert output_size((1280, 720), 300, 300, False) == (300, 169)
    assert output_size((1280, 720), 300, 300, False, even=True) == (300, 168)
    assert output_size((1280, 720), 301, 301, True, even=True) == (300, 300)
    assert output_size((1280, 720), None, None, False) == (1280, 720)
    assert grid(10, None) == (10, 1) and grid(10, 4) == (4, 3) and grid(3, 8) == (3, 1)


async def test_probe_values_and_content_type(clips):
    probe = await probe_media(clips["colour"])
    assert (probe.video.width, probe.video.height, probe.video.frame_rate) == (160, 120, 10.0)
    assert probe.video.codec == "h264" and probe.audio.codec == "aac"
    assert abs(probe.duration - SECONDS) < 0.1
    assert content_type(probe) == "video/mp4"
    assert ffmpeg_timeout(3600) > ffmpeg_timeout(10) >= 600


async def test_rotation_from_display_matrix(clips):
    rotated = clips["root"] / "rotated.mp4"
    ffmpeg("-i", str(clips["silent"]), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    probe = await probe_media(rotated)
    assert probe.video.rotation == 270  # counter-clockwise to apply: the tag says 90 clockwise
    assert probe.video.upright_size == (120, 160)
    frame = await grab_frame(rotated, probe, 1.0, output_size(probe.video.upright_size, 60, None, False), crop=False)
    assert frame.size == (60, 80)  # decoded upright


async def test_grab_frame_seeks_to_the_time_and_clamps_past_the_end(clips):
    probe = await probe_media(clips["colour"])
    for seconds in (0.0, 2.5, 4.2):
        frame = await grab_frame(clips["colour"], probe, seconds, (40, 30), crop=False)
        assert frame.size == (40, 30)
        assert abs(frame_index(frame) - seconds * FPS) <= 1.0, seconds
    past = await grab_frame(clips["colour"], probe, 60.0, (40, 30), crop=True)
    assert abs(frame_index(past) - (SECONDS * FPS - 1)) <= 1.0


async def test_grab_frame_reads_and_decodes_off_the_event_loop(clips, monkeypatch):
    """A raw frame (up to ~300 MB at the pixel cap) is read and decoded in a worker thread,
    never on the event loop the warm worker's runs share."""
    threads = []
    frombytes = Image.frombytes
    monkeypatch.setattr(Image, "frombytes", lambda *a, **k: threads.append(threading.current_thread()) or frombytes(*a, **k))
    probe = await probe_media(clips["colour"])
    await grab_frame(clips["colour"], probe, 60.0, (40, 30), crop=False)  # past the end: the tail is read too
    assert threads and threading.current_thread() not in threads


async def test_strip_times_at_equal_intervals(clips):
    probe = await probe_media(clips["colour"])
    times = strip_times(probe, 1.0, None, 5)
    assert times[0] == 1.0 and abs(times[-1] - 5.9) < 1e-6
    assert all(abs((b - a) - 1.225) < 1e-6 for a, b in zip(times, times[1:]))
    assert len(strip_times(probe, 2.0, 2.25, 10)) == 3  # only 3 frames in that span
    with pytest.raises(TaskError):
        strip_times(probe, 4.0, 3.0, 3)


async def test_reverse_in_segments_keeps_every_frame_and_reverses_audio(clips, tmp_path):
    probe = await probe_media(clips["colour"])
    dest = tmp_path / "out.mp4"
    seen: list[float] = []

    async def progress(percent: float) -> None:
        seen.append(percent)

    # 1.3 s segments: 5 of them, boundaries between frames and not on the GOP
    await reverse_video.fn(clips["colour"], probe, dest, (160, 120), crop=False, encoding=Encoding(),
                        progress=progress, segment=1.3)
    assert frames_of(dest) == frames_of(clips["colour"]) == SECONDS * FPS
    indexes = [frame_index(decode_frame(dest, t)) for t in range(0, SECONDS * FPS, 7)]
    expected = [SECONDS * FPS - 1 - t for t in range(0, SECONDS * FPS, 7)]
    assert all(abs(i - e) <= 1.0 for i, e in zip(indexes, expected)), (indexes, expected)
    levels = loudness(dest)
    assert min(levels[-2:]) > 5000 and max(levels[:3]) < 300, levels  # the tone now ends the clip
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= 100


def test_segment_length_bounds_buffered_frames():
    seconds = segment_seconds((1280, 720), 25.0)
    assert 1280 * 720 * 1.5 * seconds * 25 <= 256 * 1024 * 1024
    assert seconds > 2
    assert segment_seconds((64, 64), 25.0) == 60.0


def _playlists(root: Path, segment: Path) -> dict[str, Path]:
    secret = root / "secret.ts"
    secret.write_bytes(segment.read_bytes())
    m3u8 = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:6,\nsecret.ts\n#EXTINF:6,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    concat = "ffconcat version 1.0\nfile secret.ts\nfile /etc/passwd\n"
    files = {"list.m3u8": m3u8, "playlist.mp4": m3u8, "list.ffconcat": concat, "concat.mp4": concat}
    for name, text in files.items():
        (root / name).write_text(text)
    return {name: root / name for name in files}


async def test_playlists_and_concat_lists_are_refused(clips, tmp_path):
    segment = tmp_path / "seg.ts"
    ffmpeg("-i", str(clips["silent"]), "-c", "copy", "-f", "mpegts", str(segment))
    for name, path in _playlists(tmp_path, segment).items():
        with pytest.raises(TaskError, match="is not accepted") as error:
            await probe_media(path)
        assert str(tmp_path) not in str(error.value), name
        # pinned or not, ffmpeg itself refuses to read it
        with pytest.raises(TaskError, match="ffmpeg failed"):
            await run_ffmpeg([*input_args(path), "-f", "null", "-"], timeout=30)


# --- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(media):
    """The test clips served over HTTP, with their URLs."""
    make_colour_clip(media.directory / "colour.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=3", "-f", "lavfi", "-i", "sine=f=330:d=3:r=48000",
           "-ac", "2", "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k",
           "-shortest", str(media.directory / "busy.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=5", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(media.directory / "wide.mp4"))
    segment = media.directory / "seg.ts"
    ffmpeg("-i", str(media.directory / "colour.mp4"), "-c", "copy", "-f", "mpegts", str(segment))
    _playlists(media.directory, segment)
    return lambda name: f"{media.base}/{name}"


def download(url: str, dest: Path) -> Path:
    response = httpx.get(url)
    assert response.status_code == 200
    dest.write_bytes(response.content)
    return dest


def test_info_and_convert_probe_the_output(service, served, tmp_path):
    info = service.run({"task_name": "video.info", "url": served("busy.mp4")})
    assert info["status"] == "success", info
    assert info["result"] == {
        "content_type": "video/mp4", "width": 320, "height": 240, "duration": pytest.approx(3.0, abs=0.05),
        "frame_rate": 25.0, "alpha": False, "rotation": 0.0, "audio_codec": "aac", "video_codec": "h264",
    }
    status = service.run({
        "task_name": "video.convert", "url": served("busy.mp4"), "width": 160, "height": 160,
        "audio_codec": "mp3", "video_bitrate": 150, "audio_bitrate": 64, "sample_rate": 22050, "gop": 25,
    })
    assert status["status"] == "success", status
    result = status["result"]
    assert (result["width"], result["height"]) == (160, 120)
    assert (result["original_width"], result["original_height"]) == (320, 240)
    assert (result["video_codec"], result["audio_codec"], result["content_type"]) == ("h264", "mp3", "video/mp4")
    assert result["output"].endswith("/output.mp4")
    out = download(result["output"], tmp_path / "out.mp4")
    streams = {s["codec_type"]: s for s in json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)], capture_output=True, check=True,
    ).stdout)["streams"]}
    assert int(streams["audio"]["sample_rate"]) == 22050 and streams["audio"]["channels"] == 2
    assert 64_000 * 0.85 <= int(streams["audio"]["bit_rate"]) <= 64_000 * 1.15
    assert 150_000 * 0.4 <= int(streams["video"]["bit_rate"]) <= 150_000 * 1.15  # capped (uncapped: ~300k)
    assert (streams["video"]["width"], streams["video"]["height"], streams["video"]["pix_fmt"]) == (160, 120, "yuv420p")


def test_convert_to_wma_in_asf_through_the_cli(service, served):
    done = service.cli("run", "video.convert", f"url={served('colour.mp4')}", "width=64", "height=64",
                       "crop=true", "audio_codec=wmav2", "audio_bitrate=64")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert (result["width"], result["height"], result["audio_codec"]) == (64, 64, "wmav2")
    assert result["content_type"] == "video/x-ms-asf" and result["output"].endswith(".asf")
    assert result["duration"] == pytest.approx(SECONDS, abs=0.3)  # ASF adds a little padding


def test_convert_on_v1_uses_the_v1_defaults(service, served, tmp_path):
    response = service.http.post("/v1/create", json={
        "secret": service.account["secret"], "block": True,
        "tasks": {"task_name": "video.convert", "url": served("colour.mp4"), "width": 80},
    })
    assert response.status_code == 200, response.text
    [status] = response.json()
    assert status["status"] == "success", status
    assert "/storage/volatile/" in status["result"]["output"]
    out = download(status["result"]["output"], tmp_path / "v1.mp4")
    audio = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_streams", "-of", "json", str(out)],
        capture_output=True, check=True,
    ).stdout)["streams"][0]
    assert int(audio["sample_rate"]) == 48000  # v1: 48000 Hz, 64 kbps (v2: 44100 Hz, 128 kbps)
    assert int(audio["bit_rate"]) <= 64_000 * 1.15


def test_thumb_at_a_time_with_poster_and_quality(service, served):
    plain = service.run({"task_name": "video.thumb", "url": served("colour.mp4"), "time": 3.0, "format": "png"})
    assert plain["status"] == "success", plain
    result = plain["result"]
    assert (result["width"], result["height"]) == (160, 120)  # default: the video's size
    assert (result["original_width"], result["original_height"]) == (160, 120)
    assert result["content_type"] == "image/png" and result["duration"] == pytest.approx(SECONDS, abs=0.1)
    image = Image.open(io.BytesIO(httpx.get(result["output"]).content))
    assert image.format == "PNG" and image.size == (160, 120)
    assert abs(frame_index(image) - 30) <= 1

    poster = service.run({"task_name": "video.thumb", "url": served("colour.mp4"), "time": 99, "width": 80,
                          "height": 80, "crop": True, "poster": True, "quality": 20})
    assert poster["status"] == "success", poster
    image = Image.open(io.BytesIO(httpx.get(poster["result"]["output"]).content))
    assert image.format == "JPEG" and image.size == (80, 80)
    corner = ImageStat.Stat(image.crop((0, 0, 10, 10)).convert("RGB")).mean
    assert abs((corner[0] / 4 + (255 - corner[1]) / 4) / 2 - 59) <= 1.5  # past the end: the last frame
    centre = image.getpixel((40, 40))
    assert min(centre) > 200  # the white play triangle


def test_strip_tiles_show_frames_at_equal_intervals(service, served):
    status = service.run({"task_name": "video.strip", "url": served("colour.mp4"), "start": 1.0, "end": 5.0,
                          "count": 5, "wrap": 3, "width": 40, "height": 40, "format": "png"})
    assert status["status"] == "success", status
    result = status["result"]
    assert (result["count"], result["width"], result["height"]) == (5, 120, 60)  # 3 x 2 cells of 40 x 30
    assert (result["original_width"], result["original_height"], result["frame_rate"]) == (160, 120, 10.0)
    assert result["content_type"] == "image/png"
    image = Image.open(io.BytesIO(httpx.get(result["output"]).content))
    assert image.size == (120, 60)
    for i, seconds in enumerate([1.0, 2.0, 3.0, 4.0, 5.0]):
        x, y = (i % 3) * 40, (i // 3) * 30
        assert abs(frame_index(image.crop((x + 5, y + 5, x + 35, y + 25))) - seconds * FPS) <= 1, i


def test_reverse_plays_backwards(service, served, tmp_path):
    status = service.run({"task_name": "video.reverse", "url": served("colour.mp4"), "width": 80})
    assert status["status"] == "success", status
    result = status["result"]
    assert (result["width"], result["height"], result["audio_codec"]) == (80, 60, "aac")
    assert result["duration"] == pytest.approx(SECONDS, abs=0.1)
    out = download(result["output"], tmp_path / "reversed.mp4")
    assert frames_of(out) == SECONDS * FPS
    assert abs(frame_index(decode_frame(out)) - (SECONDS * FPS - 1)) <= 1  # first frame = the source's last
    assert abs(frame_index(decode_frame(out, SECONDS * FPS - 1)) - 0) <= 1  # last = first
    levels = loudness(out)
    assert levels[-1] > 5000 and levels[0] < 300, levels


def test_convert_reports_progress_while_executing(service, served):
    created = service.create({"task_name": "video.convert", "url": served("wide.mp4"), "crf": 30})
    assert created.status_code == 200
    key = created.json()[0]["key"]
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        status = service.http.get("/v2/status", params={"tasks": key, "secret": service.account["secret"]}).json()[0]
        if status["status"] not in ("queued", "executing"):
            break
        if status.get("progress") is not None:
            seen.append(status["progress"])
        time.sleep(0.05)
    assert status["status"] == "success", status
    assert seen and all(0 <= p <= 100 for p in seen) and seen == sorted(seen), seen
    assert any(0 < p < 100 for p in seen), seen


def test_malicious_playlists_are_refused(service, served):
    for name in ("playlist.mp4", "list.m3u8", "concat.mp4"):
        status = service.run({"task_name": "video.thumb", "url": served(name)})
        assert status["status"] == "error", status
        assert "is not accepted" in status["error"], status["error"]

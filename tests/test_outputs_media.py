"""VimQu output engines (flows/outputs): HLS/DASH ladders over shared CMAF segments,
thumbnails and sprite sheets, single-file videos, and their configs — on a generated 10 s
640x360 30 fps clip with audio whose frames say their number (a white bar at x = 2 × (frame
number + 1)), checked with ffprobe. No services."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.media_tools import extinf_durations, ffprobe_json, mpd_segment_durations, run
from PIL import Image

from flows.outputs import package as pkg
from flows.outputs.config import OutputConfigError, parse_output_config
from flows.outputs.ladder import BUILTIN_LADDER, plan_ladder
from flows.outputs.package import package_streams
from flows.outputs.thumbnails import choose_strategy, make_thumbnails
from flows.outputs.video import encode_output
from flows.steps.tools.probe import probe_media

FPS = 30
DURATION = 10
SEGMENT = 3.0
NS = {"mpd": pkg.MPD_NS}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """10 s, 640x360, 30 fps H.264 + stereo AAC; frame n shows an 8 px white bar at x = 2(n + 1)."""
    path = tmp_path_factory.mktemp("outputs") / "clip.mp4"
    run("ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=black:s=640x360:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"color=c=white:s=8x360:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:d={DURATION}:r=48000",
        "-filter_complex", "[0:v][1:v]overlay=x='n*2':y=0:eval=frame[v]", "-map", "[v]", "-map", "2:a",
        "-ac", "2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", str(path))
    return path


@pytest.fixture(scope="module")
def probe(clip):
    return asyncio.run(probe_media(clip))


def bar_frame(image: Image.Image, scale: float = 1.0) -> float:
    """The frame number an image shows: (the left edge of its white bar, in source pixels) / 2 - 1
    (overlay's ``n`` counts from 1 here)."""
    columns = np.asarray(image.convert("L"), dtype=float).mean(axis=0)
    bright = np.nonzero(columns > 128)[0]
    assert bright.size, "no bar in the image"
    return bright[0] / scale / 2 - 1


def key_times(*files: Path) -> list[float]:
    """Presentation times of the key frames of the video in ``files`` (init + segments, joined)."""
    joined = files[0].parent / f"joined-{files[0].parent.name}.mp4"
    joined.write_bytes(b"".join(f.read_bytes() for f in files))
    packets = ffprobe_json("-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", str(joined))["packets"]
    joined.unlink()
    return sorted(round(float(p["pts_time"]), 3) for p in packets if "K" in p["flags"])


# --- configs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_type, config, field, words", [
    ("hls", {"variants": ["360p", "999p"]}, "variants.1", "999p"),
    ("hls", {"variants": [{"height": 360}]}, "variants.0.video_bitrate", "required"),
    ("dash", {"segment_duration": 0}, "segment_duration", "greater than"),
    ("hls", {"variants": ["360p", {"height": 360, "video_bitrate": 900}]}, "variants.1", "height 360"),
    ("thumbnail", {"count": 3, "interval": 2}, "count", "only one of"),
    ("thumbnail", {"fit": "fill", "width": 100}, "fit", "both width and height"),
    ("thumbnail", {"format": "gif"}, "format", "'jpg', 'png' or 'webp'"),
    ("thumbnail", {"sizes": 3}, "sizes", "not a field"),
    ("video", {"container": "webm", "codec": "h264"}, "codec", "cannot go in webm"),
    ("video", {"container": "mp4", "audio_codec": "vorbis"}, "audio_codec", "cannot go in mp4"),
    ("video", {"crf": 20, "video_bitrate": 900}, "crf", "not both"),
    ("video", {"codec": "h264", "crf": 60}, "crf", "0 to 51"),
    ("gif", {}, "type", "one of"),
])
def test_config_errors_name_the_field(output_type, config, field, words):
    with pytest.raises(OutputConfigError) as caught:
        parse_output_config(output_type, config)
    errors = caught.value.errors
    assert field in errors, errors
    assert any(field.rsplit(".", 1)[-1] in m and words in m for m in errors[field]), errors


def test_config_defaults():
    hls = parse_output_config("hls", {})
    assert hls.variants == ["360p", "720p", "1080p"] and hls.segment_duration == 4
    assert parse_output_config("mpeg_dash", {"variants": ["240p"]}).variants == ["240p"]
    webm = parse_output_config("video", {"container": "webm"})
    assert (webm.codec, webm.audio_codec) == ("vp9", "opus")
    thumbs = parse_output_config("thumbnail", {"format": "jpeg", "times": [1, 2]})
    assert thumbs.format == "jpg" and thumbs.fit == "fit"


def test_ladder_never_upscales():
    ladder = [BUILTIN_LADDER[n] for n in ("240p", "360p", "720p")]
    plan = plan_ladder(ladder, (640, 360), 30)
    assert [(r.name, r.width, r.height) for r in plan.rungs] == [("240p", 426, 240), ("360p", 640, 360)]
    assert [d.name for d in plan.dropped] == ["720p"] and "never upscaled" in plan.dropped[0].reason
    portrait = plan_ladder(ladder, (360, 640), 60)
    assert [(r.width, r.height) for r in portrait.rungs] == [(240, 426), (360, 640)]
    assert portrait.rungs[1].video_bitrate == 1200  # 1.5x over 30 fps
    assert plan_ladder(ladder, (640, 360), 120).rungs[0].fps == 60
    capped = plan_ladder([BUILTIN_LADDER["1080p"]], (320, 180), 25)
    assert capped.capped == "1080p" and [(r.width, r.height) for r in capped.rungs] == [(320, 180)]


def test_steps_name_their_runs():
    """The steps' run names resolve as Prefect resolves them (by the ``parameters`` keyword)."""
    from prefect._internal.engine import resolve_custom_task_run_name

    configs = {"thumbnail": {"width": 320, "sprite": True}, "video": {"container": "webm"},
               "hls": {"variants": ["360p", {"height": 200, "video_bitrate": 300}]}}
    for engine, output_type, expected in [(make_thumbnails, "thumbnail", "thumbnails + sprite 320xauto jpg"),
                                          (encode_output, "video", "video webm vp9"),
                                          (package_streams, "hls", "package hls+dash 360p/200p")]:
        if not hasattr(engine, "task_run_name"):
            pytest.skip("steps are plain functions (DRAGONFLOW_STEP_TASKS=false)")
        parameters = {"config": parse_output_config(output_type, configs[output_type])}
        assert resolve_custom_task_run_name(engine, parameters) == expected


# --- hls + dash -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(clip, probe, tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder")
    config = parse_output_config("hls", {"variants": ["240p", "360p", "720p"], "segment_duration": SEGMENT})
    result = asyncio.run(package_streams.fn(clip, probe, config, out, formats=("hls", "dash"), preset="veryfast"))
    return out, result


def test_rungs_above_the_input_are_dropped_and_reported(packaged):
    out, result = packaged
    assert [(r.name, r.width, r.height) for r in result.rungs] == [("240p", 426, 240), ("360p", 640, 360)]
    assert [d.name for d in result.dropped] == ["720p"] and result.notes
    assert not (out / "720p").exists()
    assert result.gop == 90


def test_players_read_both_manifests_and_every_rung_decodes(packaged):
    out, result = packaged
    for manifest in (pkg.MASTER, pkg.MPD):
        streams = ffprobe_json("-show_entries", "stream=codec_type,codec_name,width,height",
                               str(out / manifest))["streams"]
        sizes = {(s["width"], s["height"]) for s in streams if s["codec_type"] == "video"}
        assert sizes == {(426, 240), (640, 360)}, manifest
        assert any(s["codec_name"] == "aac" for s in streams), manifest
    for rendition in result.renditions:  # decode a middle segment of each, after its init segment
        folder = out / rendition.name
        joined = folder / "check.mp4"
        joined.write_bytes((folder / pkg.INIT).read_bytes() + (folder / "seg_00002.m4s").read_bytes())
        frames = ffprobe_json("-count_frames", "-show_entries", "stream=nb_read_frames,codec_type", str(joined))
        joined.unlink()
        count = int(frames["streams"][0]["nb_read_frames"])
        if rendition.kind == "video":
            assert count == SEGMENT * FPS, rendition.name
        else:
            assert abs(count * 1024 / 48000 - SEGMENT) < 0.1


def test_segments_last_the_target_duration(packaged):
    out, result = packaged
    for rendition in result.renditions:
        playlist = (out / rendition.playlist).read_text()
        extinf = [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", playlist)]
        assert len(extinf) == 4 and abs(sum(extinf) - DURATION) < 0.1, rendition.name
        assert all(abs(d - SEGMENT) <= 0.1 for d in extinf[:-1]), (rendition.name, extinf)
        assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
        assert "#EXT-X-TARGETDURATION:3" in playlist
    for rep, durations in mpd_segment_durations(out / pkg.MPD).items():
        assert all(abs(d - SEGMENT) <= 0.1 for d in durations[:-1]), (rep, durations)
    master = (out / pkg.MASTER).read_text()
    assert master.count("#EXT-X-STREAM-INF:") == 2 and 'AUDIO="audio_96k"' in master
    for rung in result.rungs:  # BANDWIDTH: the measured peak (this clip compresses far below the cap)
        assert 0 < rung.average_bandwidth <= rung.bandwidth <= 1.5 * rung.bitrate * 1000
        assert f"BANDWIDTH={rung.bandwidth + result.renditions[-1].bandwidth}," in master
        assert f"RESOLUTION={rung.width}x{rung.height}" in master


def test_every_rung_has_its_key_frames_at_the_segment_boundaries(packaged):
    out, result = packaged
    times = {}
    for rung in result.rungs:
        folder = out / rung.name
        times[rung.name] = key_times(folder / pkg.INIT, *sorted(folder.glob("seg_*.m4s")))
    assert times["240p"] == times["360p"], times
    start = times["240p"][0]
    assert [round(t - start, 3) for t in times["240p"]] == [0.0, 3.0, 6.0, 9.0]


def test_iframe_playlists_give_each_segments_key_frame(packaged):
    out, result = packaged
    streams = [dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line))
               for line in re.findall(r"#EXT-X-I-FRAME-STREAM-INF:(.*)", (out / pkg.MASTER).read_text())]
    assert [(s["RESOLUTION"], s["CODECS"], s["URI"]) for s in streams] == [
        (f"{r.width}x{r.height}", f'"{r.codecs}"', f'"{r.name}/{pkg.IFRAME_PLAYLIST}"') for r in result.rungs]
    assert all(0 < int(s["AVERAGE-BANDWIDTH"]) <= int(s["BANDWIDTH"]) for s in streams), streams
    for rung in result.rungs:
        assert rung.iframe_playlist in result.hls_files and rung.iframe_playlist not in result.dash_files
        folder = out / rung.name
        text = (out / rung.iframe_playlist).read_text()
        assert "#EXT-X-I-FRAMES-ONLY" in text and f'#EXT-X-MAP:URI="{pkg.INIT}"' in text
        assert extinf_durations(out / rung.iframe_playlist) == extinf_durations(out / rung.playlist)
        entries = re.findall(r"#EXT-X-BYTERANGE:(\d+)@(\d+)\n(\S+)", text)
        assert [uri for *_, uri in entries] == [pkg.SEGMENT.format(k + 1) for k in range(len(rung.segments))]
        keys = key_times(folder / pkg.INIT, *sorted(folder.glob("seg_*.m4s")))
        for (length, offset, uri), key in zip(entries, keys):  # the range alone, after the init segment, is one I frame
            joined = folder / "iframe.mp4"
            joined.write_bytes((folder / pkg.INIT).read_bytes()
                               + (folder / uri).read_bytes()[int(offset):int(offset) + int(length)])
            frames = ffprobe_json("-select_streams", "v:0", "-show_frames", "-show_entries",
                                  "frame=key_frame,pict_type,width,height,pts_time", str(joined))["frames"]
            joined.unlink()
            assert [(f["key_frame"], f["pict_type"], f["width"], f["height"], round(float(f["pts_time"]), 3))
                    for f in frames] == [(1, "I", rung.width, rung.height, key)], (rung.name, uri, frames)


def test_both_manifests_reference_the_same_segment_files(packaged):
    out, result = packaged
    hls: set[str] = set()
    for playlist in [p for p in result.hls_files if p.endswith(".m3u8") and p != pkg.MASTER]:
        folder = Path(playlist).parent
        text = (out / playlist).read_text()
        uris = re.findall(r'URI="([^"]+)"', text) + [line for line in text.splitlines() if line.endswith(".m4s")]
        hls |= {str(folder / uri) for uri in uris}
    dash: set[str] = set()
    mpd = ET.parse(out / pkg.MPD).getroot()
    for rep in mpd.iter(f"{{{pkg.MPD_NS}}}Representation"):
        template = rep.find("mpd:SegmentTemplate", NS)
        rid = rep.get("id")
        dash.add(template.get("initialization").replace("$RepresentationID$", rid))
        count = sum(int(s.get("r", "0")) + 1 for s in template.findall("mpd:SegmentTimeline/mpd:S", NS))
        for n in range(int(template.get("startNumber")), int(template.get("startNumber")) + count):
            dash.add(template.get("media").replace("$RepresentationID$", rid).replace("$Number%05d$", f"{n:05d}"))
    assert hls == dash and len(dash) == 3 * 5
    listed = {f for f in result.hls_files if not f.endswith((".m3u8", ".mpd"))}
    assert listed == dash == {f for f in result.dash_files if not f.endswith(".mpd")}
    assert all((out / f).is_file() for f in {*result.hls_files, *result.dash_files})
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        *result.hls_files, *result.dash_files}


async def test_hls_alone_writes_no_mpd(clip, probe, tmp_path):
    config = parse_output_config("hls", {"variants": ["240p"], "segment_duration": 5})
    result = await package_streams.fn(clip, probe, config, tmp_path, formats=("hls",), preset="ultrafast")
    assert result.dash_files == [] and not (tmp_path / pkg.MPD).exists()
    assert result.hls_files[0] == pkg.MASTER and [r.segments for r in result.rungs] == [[5.0, 5.0]]


# --- thumbnails -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["seek", "pass"])
async def test_thumbnails_show_the_frame_at_each_time(clip, probe, tmp_path, strategy):
    times = [0, 1, 4.5, 8.2, 30]
    config = parse_output_config("thumbnail", {"times": times, "format": "png"})
    result = await make_thumbnails.fn(clip, probe, config, tmp_path, strategy=strategy)
    assert result.strategy == strategy
    assert result.files == [f"thumb_{i:05d}.png" for i in range(1, 6)]
    shown = [bar_frame(Image.open(tmp_path / f)) for f in result.files]
    # the first frame at or after each time; past the end, the last frame
    assert shown == [0, 30, 135, 246, DURATION * FPS - 1]
    assert Image.open(tmp_path / result.files[0]).size == (640, 360)


async def test_sprite_sheet_and_its_vtt_index(clip, probe, tmp_path):
    config = parse_output_config("thumbnail", {"count": 10, "width": 320, "sprite": True, "sprite_columns": 4,
                                               "format": "jpg"})
    result = await make_thumbnails.fn(clip, probe, config, tmp_path)
    assert result.files[-2:] == ["sprite.jpg", "sprite.vtt"] and len(result.files) == 12
    assert Image.open(tmp_path / "thumb_00001.jpg").size == (320, 180)
    tile_w, tile_h = result.tile_size
    assert tile_w <= 192 and (tile_w, tile_h) == (192, 108)
    sheet = Image.open(tmp_path / "sprite.jpg")
    assert sheet.size == (4 * tile_w, 3 * tile_h)
    vtt = (tmp_path / "sprite.vtt").read_text()
    assert vtt.startswith("WEBVTT\n")
    cues = re.findall(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(\S+)", vtt)
    assert len(cues) == 10

    def seconds(h, m, s, ms):
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    spans = [(seconds(*c[:4]), seconds(*c[4:8]), c[8]) for c in cues]
    assert spans[0][0] == 0 and abs(spans[-1][1] - DURATION) < 0.05
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: the whole video is covered
    for i, (start, end, url) in enumerate(spans):
        name, x, y, w, h = re.fullmatch(r"([\w.]+)#xywh=(\d+),(\d+),(\d+),(\d+)", url).groups()
        x, y, w, h = map(int, (x, y, w, h))
        assert name == "sprite.jpg" and (w, h) == (tile_w, tile_h)
        assert 0 <= x and x + w <= sheet.width and 0 <= y and y + h <= sheet.height
        tile = sheet.crop((x, y, x + w, y + h))  # the tile shows the frame at its time
        assert abs(bar_frame(tile, scale=w / 640) - result.times[i] * FPS) <= 2.5, (i, result.times[i])


def test_the_cheaper_way_to_grab_frames_is_chosen():
    assert choose_strategy(20, 60, 30, gop_seconds=250 / 30) == "pass"  # the bench's case: one pass wins
    assert choose_strategy(20, 7200, 25, gop_seconds=10) == "seek"  # a film: 20 seeks, not 180,000 frames
    assert choose_strategy(20, 60, 30, gop_seconds=1) == "seek"  # short GOPs make seeks cheap


# --- video ----------------------------------------------------------------------------------------


def top_level_atoms(path: Path) -> list[str]:
    atoms, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset:offset + 4], "big"), data[offset + 4:offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        atoms.append(kind)
        if size < 8:
            break
        offset += size
    return atoms


async def test_video_mp4_h264_with_faststart(clip, probe, tmp_path):
    config = parse_output_config("video", {"width": 320, "crf": 28, "audio_bitrate": 96})
    result = await encode_output.fn(clip, probe, config, tmp_path)
    dest = tmp_path / result.files[0]
    assert result.files == ["video.mp4"] and (result.width, result.height) == (320, 180)
    streams = ffprobe_json("-show_entries", "stream=codec_name,width,height,pix_fmt", str(dest))["streams"]
    assert streams[0] == {"codec_name": "h264", "width": 320, "height": 180, "pix_fmt": "yuv420p"}
    assert streams[1]["codec_name"] == "aac"
    atoms = top_level_atoms(dest)
    assert atoms.index("moov") < atoms.index("mdat"), atoms
    assert abs(result.duration - DURATION) < 0.1


async def test_video_webm_vp9_even_size_and_fps(clip, probe, tmp_path):
    config = parse_output_config("video", {"container": "webm", "width": 250, "height": 250, "fps": 15,
                                           "video_bitrate": 300})
    result = await encode_output.fn(clip, probe, config, tmp_path)
    dest = tmp_path / "video.webm"
    info = ffprobe_json("-show_entries", "stream=codec_name,width,height,r_frame_rate:format=format_name", str(dest))
    assert info["format"]["format_name"].startswith("matroska,webm")
    video, audio = info["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp9", 250, 140)  # 250x140.6 -> even
    assert video["r_frame_rate"] == "15/1" and audio["codec_name"] == "opus"
    assert result.fps == 15

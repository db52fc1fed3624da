"""Our HLS and DASH outputs in real players: a 3-rung ladder with audio (``package_streams``,
both manifests over the same segments) served over HTTP on 127.0.0.1 with a page that loads
hls.js, dash.js or shaka-player from ``.players`` (``./bootstrap.sh test`` installs them), in
Debian's chromium, headless, driven by playwright-core (``tests/players/drive.mjs``).

Each player plays every rung in turn (that rung forced, ABR off) for a second, showing that
rung's picture, with the audio decoded and no error event. The picture the browser shows is a
rung's display size: its coded size times its sample aspect ratio (a 426x240 rung of a 16:9
input shows 427x240). hls.js shows a key frame of every I-frame playlist with its I-frame
player, shaka-player fast-forwards on them; both fetch exactly the byte ranges the playlists
give."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from fractions import Fraction
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from deployments.local import serve_http
from flows.outputs import package as pkg
from flows.outputs.config import parse_output_config
from flows.outputs.package import package_streams
from flows.steps.tools.probe import probe_media
from tests.media_tools import ffprobe_json, run
from tests.storage_servers import ROOT

PLAYERS = ROOT / ".players" / "node_modules"
PACKAGES = ("playwright-core", "hls.js", "dashjs", "shaka-player")
CHROMIUM = Path("/usr/bin/chromium")
DURATION, FPS, SEGMENT = 10, 24, 1.0
LADDER = {"variants": [{"height": 144, "video_bitrate": 150}, "240p", "360p"], "segment_duration": SEGMENT,
          "audio_bitrate": 64}
CASES = {"hls.js HLS": ("hls.js", pkg.MASTER), "dash.js DASH": ("dash.js", pkg.MPD),
         "shaka HLS": ("shaka", pkg.MASTER), "shaka DASH": ("shaka", pkg.MPD)}
IFRAMES = ("hls.js HLS", "shaka HLS")
BROWSER_TIMEOUT = 240


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files, with one byte range per request (players fetch I-frames by range)."""

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start, end = int(match[1]), min(int(match[2] or len(data) - 1), len(data) - 1)
        if start > end:
            return self.send_error(416)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start:end + 1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ladder(tmp_path_factory) -> tuple[Path, pkg.PackageResult]:
    """10 s of 640x360 24 fps testsrc2 with a tone, packaged as HLS and DASH: (folder, result)."""
    work = tmp_path_factory.mktemp("players")
    clip = work / "clip.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:d={DURATION}:r=48000", "-ac", "2", "-c:v", "libx264",
        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(clip))
    probe = asyncio.run(probe_media(clip))
    config = parse_output_config("hls", LADDER)
    out = work / "ladder"
    result = asyncio.run(package_streams.fn(clip, probe, config, out, formats=("hls", "dash"), preset="veryfast"))
    return out, result


def picture_size(folder: Path) -> tuple[int, int]:
    """The size chromium shows a rung's frames at: its coded size stretched by its sample
    aspect ratio (wider when above 1, taller when below)."""
    [stream] = ffprobe_json("-show_entries", "stream=width,height,sample_aspect_ratio",
                            str(folder / pkg.INIT))["streams"]
    width, height = stream["width"], stream["height"]
    sar = Fraction(stream.get("sample_aspect_ratio", "1:1").replace(":", "/"))
    if sar > 1:
        return int(width * sar + Fraction(1, 2)), height
    return width, int(height / sar + Fraction(1, 2)) if sar else height


def iframe_ranges(folder: Path, rung: str) -> set[tuple[str, str]]:
    """(URL path, Range header) of every entry of a rung's I-frame playlist."""
    text = (folder / rung / pkg.IFRAME_PLAYLIST).read_text()
    return {(f"/media/{rung}/{uri}", f"bytes={int(offset)}-{int(offset) + int(length) - 1}")
            for length, offset, uri in re.findall(r"#EXT-X-BYTERANGE:(\d+)@(\d+)\n(\S+)", text)}


@pytest.fixture(scope="module")
def played(ladder, tmp_path_factory) -> dict:
    """Every case played in one chromium: {"support": {MIME type: bool}, "cases": {name: result}}."""
    missing = [name for name in PACKAGES if not (PLAYERS / name / "package.json").is_file()]
    if missing or not CHROMIUM.is_file() or not shutil.which("node"):
        pytest.fail(f"the players need node, {CHROMIUM} and {', '.join(PACKAGES)} in {PLAYERS}"
                    f" (missing: {', '.join(missing) or 'chromium or node'}): run ./bootstrap.sh test")
    out, result = ladder
    site = tmp_path_factory.mktemp("site")
    for name, target in (("players", PLAYERS), ("page", ROOT / "tests" / "players"), ("media", out)):
        (site / name).symlink_to(target)
    rungs = [{"size": [r.width, r.height], "picture": picture_size(out / r.name)} for r in result.rungs]
    cases = [{"player": player, "url": f"/media/{manifest}", "rungs": rungs, "iframes": name in IFRAMES}
             for name, (player, manifest) in CASES.items()]
    mimes = [f'video/mp4; codecs="{r.codecs}"' for r in result.rungs] + [
        f'audio/mp4; codecs="{r.codecs}"' for r in result.renditions if r.kind == "audio"]
    with serve_http(partial(RangeHandler, directory=str(site))) as base:
        done = subprocess.run(["node", str(ROOT / "tests" / "players" / "drive.mjs"), str(PLAYERS),
                               f"{base}/page/page.html", json.dumps({"mimes": mimes, "cases": cases})],
                              capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    return {"support": answer["support"], "cases": dict(zip(CASES, answer["cases"]))}


def test_chromium_plays_h264_and_aac_in_media_source(played):
    assert played["support"] and all(played["support"].values()), played["support"]


@pytest.mark.parametrize("case", list(CASES))
def test_every_rung_plays_with_its_picture_and_the_audio(case, played, ladder):
    out, result = ladder
    seen = played["cases"][case]
    assert seen["errors"] == [] and seen["pageErrors"] == [], seen["errors"] + seen["pageErrors"]
    assert sorted((t["width"], t["height"]) for t in seen["tracks"]) == [(r.width, r.height) for r in result.rungs]
    assert [tuple(r["size"]) for r in seen["rungs"]] == [(r.width, r.height) for r in result.rungs]
    for rung, shown in zip(result.rungs, seen["rungs"]):
        assert shown["to"] - shown["from"] >= 1, (rung.name, shown)
        assert tuple(shown["shown"]) == picture_size(out / rung.name), (rung.name, shown)
    audio = seen["audio"]
    assert audio["tracks"] == 1 and audio["codecs"] and all("mp4a.40.2" in c for c in audio["codecs"]), audio
    assert audio["decodedBytes"] > 0, audio


def test_hls_js_shows_a_key_frame_of_every_iframe_playlist(played, ladder):
    out, result = ladder
    seen = played["cases"]["hls.js HLS"]
    iframes = seen["iframes"]
    assert [(t["width"], t["height"], t["codecs"]) for t in iframes["tracks"]] == [
        (r.width, r.height, r.codecs) for r in result.rungs]
    assert [tuple(s["size"]) for s in iframes["shown"]] == [picture_size(out / r.name) for r in result.rungs]
    fetched = {(r["url"], r["range"]) for r in seen["ranges"]}
    for rung in result.rungs:  # one key frame of each, by its playlist's byte range
        assert len(fetched & iframe_ranges(out, rung.name)) == 1, (rung.name, fetched)
    assert fetched <= set().union(*(iframe_ranges(out, r.name) for r in result.rungs)), fetched


def test_shaka_fast_forwards_on_the_iframe_playlists(played, ladder):
    out, result = ladder
    seen = played["cases"]["shaka HLS"]
    iframes = seen["iframes"]
    assert [(t["width"], t["height"], t["codecs"], t["iframesOnly"]) for t in iframes["tracks"]] == [
        (r.width, r.height, r.codecs, True) for r in result.rungs]
    assert iframes["fastForwardTo"] >= 8
    fetched = {(r["url"], r["range"]) for r in seen["ranges"]}
    top = result.rungs[-1].name  # the rung playing when fast-forward began
    assert len(fetched) >= 2 and fetched <= iframe_ranges(out, top), fetched

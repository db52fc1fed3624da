"""Inputs served the way real origins and CDNs serve them: a redirect to a CDN's opaque
URL, ``application/octet-stream``, no ``Content-Length`` (HTTP/1.0 close-delimited and
HTTP/1.1 chunked), ``Content-Encoding: gzip`` and a slow (1 MB/s) download, each through a
task on the running service."""

from __future__ import annotations

import gzip
import io
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from PIL import Image

from deployments.local import serve_http

RATE = 1024 * 1024  # bytes per second of the slow route


def origin_handler(files: Path, cdn: list[str]):
    """``/origin/NAME`` redirects to the CDN; the CDN's routes serve ``files/NAME``:
    ``/assets/NAME`` as octet-stream under an opaque URL, ``/close/NAME`` without a length
    (HTTP/1.0), ``/chunked/NAME`` chunked, ``/gzip/NAME`` gzip-encoded (asked or not),
    ``/slow/NAME`` at ``RATE``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            route, _, name = urlsplit(self.path).path.strip("/").partition("/")
            if route == "origin":
                self.send_response(302)
                self.send_header("Location", f"{cdn[0]}/assets/{name}?Expires=1893456000&Signature=abc%3D")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            body = (files / name).read_bytes()
            if route == "chunked":
                self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if route == "gzip":  # whatever the client accepts, as some CDNs do
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            if route == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
            elif route != "close":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = 64 * 1024
            for start in range(0, len(body), step):
                part = body[start:start + step]
                if route == "chunked":
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
                if route == "slow":
                    time.sleep(step / RATE)
            if route == "chunked":
                self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    """(origin URL, CDN URL, the files they serve): a photo, a short video, a 3 MB WAV."""
    files = tmp_path_factory.mktemp("cdn")
    Image.new("RGB", (640, 480), (30, 120, 200)).save(files / "photo.jpg", "JPEG")
    Image.new("RGB", (320, 200), (200, 120, 30)).save(files / "badge.png", "PNG")
    ffmpeg = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run([*ffmpeg, "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2", "-pix_fmt", "yuv420p",
                    str(files / "clip.mp4")], check=True)
    subprocess.run([*ffmpeg, "-f", "lavfi", "-i", "sine=f=440:d=17:r=48000", "-ac", "2",
                    str(files / "tone.wav")], check=True)  # 17 s of 16-bit stereo: 3.1 MB
    cdn: list[str] = []
    handler = origin_handler(files, cdn)
    with serve_http(handler) as origin, serve_http(handler) as cdn_url:
        cdn.append(cdn_url)
        yield origin, cdn_url, files


def test_a_redirect_to_a_cdns_opaque_octet_stream_url(service, inputs):
    origin, _, _ = inputs
    status = service.run({"task_name": "image.thumb", "url": f"{origin}/origin/photo.jpg", "width": 160,
                          "height": 120})
    assert status["status"] == "success", status
    thumb = Image.open(io.BytesIO(service.http.get(status["result"]["output"]).content))
    assert (thumb.format, thumb.size) == ("JPEG", (160, 120))


@pytest.mark.parametrize("route", ["close", "chunked"])
def test_no_content_length(service, inputs, route):
    _, cdn, files = inputs
    status = service.run({"task_name": "video.info", "url": f"{cdn}/{route}/clip.mp4"})
    assert status["status"] == "success", status
    assert (status["result"]["width"], status["result"]["height"]) == (320, 240), status["result"]
    assert status["result"]["duration"] == pytest.approx(2.0, abs=0.1)


def test_a_gzip_encoded_response_is_decoded(service, inputs):
    """We ask for ``identity``; a CDN that compresses anyway is decoded (and the size limit
    counts decoded bytes)."""
    _, cdn, _ = inputs
    status = service.run({"task_name": "image.info", "url": f"{cdn}/gzip/badge.png"})
    assert status["status"] == "success", status
    assert (status["result"]["width"], status["result"]["height"]) == (320, 200), status["result"]


def test_a_slow_input_is_waited_for(service, inputs):
    _, cdn, files = inputs
    size = (files / "tone.wav").stat().st_size
    start = time.monotonic()
    status = service.run({"task_name": "audio.info", "url": f"{cdn}/slow/tone.wav"})
    took = time.monotonic() - start
    assert status["status"] == "success", status
    assert status["result"]["duration"] == pytest.approx(17.0, abs=0.1)
    assert took >= size / RATE * 0.9, f"{size} bytes at 1 MB/s took only {took:.1f} s: not throttled"

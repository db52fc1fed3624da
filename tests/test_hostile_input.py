"""Hostile and broken input (issue 15): every case gets a clear 4xx in the seed's error shape
(``{"status": "error", "errors": [{name, location, description}]}``; VimQu's ``{"message"}``
under ``/api/``) or a task whose status is ``error`` with a message saying what is wrong,
and the service keeps serving: the module ends with a normal task that succeeds.

Real service (``service``), real HTTP servers and sockets on loopback, real ffmpeg and Pillow.
Cases already tested elsewhere are not repeated here; ``ELSEWHERE`` names those tests (and
``test_the_cases_tested_elsewhere_exist`` keeps the list honest).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import io
import json
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageFile

from flows.errors import FetchError, TaskError
from flows.steps.fetch import fetch
from flows.steps.image.probe import probe_image
from flows.steps.tools.ffmpeg import input_args, run_ffmpeg
from flows.steps.tools.probe import probe_media
from tests.test_api_errors import assert_error_body
from tests.test_api_surface import account_runs
from tests.test_fetch import cfg
from tests.test_imaging import png_header
from tests.test_media_runner import ffmpeg_children
from tests.test_video import _playlists

pytestmark = pytest.mark.usefixtures("own_stores")  # step-level fetches find our storage blocks without Prefect

ELSEWHERE = {
    "//v2/create is served": "tests.test_api_errors::test_doubled_slashes_are_served",
    "a bare Authorization header, as a secret then as an api key":
        "tests.test_api_errors::test_bare_authorization_secret_and_api_key",
    "127.0.0.1, 169.254.169.254, 0.0.0.0, [::1], [::ffff:10.1.2.3] refused before connecting":
        "tests.test_fetch::test_internal_addresses_refused_before_connecting",
    "a DNS name (localhost) that resolves to loopback": "tests.test_fetch::test_hostname_entry_allows",
    "redirects to private addresses and other schemes": "tests.test_fetch::test_redirect_to_refused_url",
    "a private address through the service": "tests.test_service::test_private_address_fetch_refused",
    "HLS and concat playlists naming local files (video tasks)": "tests.test_video::test_malicious_playlists_are_refused",
    "playlists refused by ffprobe and ffmpeg themselves": "tests.test_video::test_playlists_and_concat_lists_are_refused",
    "an ffmpeg run killed at its timeout": "tests.test_media_runner::test_a_timeout_kills_a_long_ffmpeg",
    "another account's key in a status": "tests.test_service::test_accounts_see_only_their_tasks",
    "FastAPI's own request validation in the seed's shape":
        "tests.test_api_errors::test_request_validation_answers_400_with_the_seed_error_body",
}


def test_the_cases_tested_elsewhere_exist():
    for case, where in ELSEWHERE.items():
        module, name = where.split("::")
        assert callable(getattr(importlib.import_module(module), name, None)), f"{case}: {where} is gone"


def assert_seed_error(response: httpx.Response, status_code: int, name: str, *words: str) -> str:
    """The seed's error body with one error named ``name``; its description (holding ``words``)."""
    assert_error_body(response, status_code, name)
    description = response.json()["errors"][0]["description"]
    assert all(word in description for word in words), description
    return description


def run_many(service, tasks: list[dict], **body) -> list[dict]:
    """Create ``tasks`` in one request with block=true; their final statuses, in order."""
    response = service.create(tasks, block=True, **body)
    assert response.status_code == 200, response.text
    return response.json()


def post_raw(service, path: str, content: bytes) -> httpx.Response:
    return httpx.post(service.api + path, content=content, timeout=60)


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("content, words", [
    (b'{"tasks": [', ["not valid JSON"]),
    (b'{"tasks": {"task_name": "hello"}, "secret": "x"} trailing', ["not valid JSON", "Extra data"]),
    (b"\xff\xfe\xfa not text", ["not valid JSON"]),
    (b"[1, 2]", ["must be a JSON object"]),
    (b'"tasks"', ["must be a JSON object"]),
    (b'{"tasks": ' + b"[" * 200 + b"]" * 200 + b"}", ["more than 64 levels deep"]),
    (b'{"tasks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ["more than 64 levels deep"]),  # past Python's recursion limit
])
def test_malformed_bodies_are_400(service, content, words):
    for path in ("/v2/create", "/v1/create", "/v2/status", "/v1/create_file"):
        assert_seed_error(post_raw(service, path, content), 400, "body", *words)


def test_wrong_types(service):
    secret = service.account["secret"]
    for tasks, name in [(5, "tasks.0"), ("hello", "tasks.0"), ([None], "tasks.0"), ([], "tasks"),
                        ({"task_name": 5}, "tasks.0.task_name"), ({"task_name": ["hello"]}, "tasks.0.task_name"),
                        ([{"task_name": "hello", "name": "ok"}, {"name": "x"}], "tasks.1.task_name")]:
        assert_error_body(service.create(tasks), 400, name)
    for tasks in (5, {"key": "A"}, [["A"]]):
        assert_seed_error(service.http.post("/v2/status", json={"secret": secret, "tasks": tasks}), 400, "tasks",
                          "task keys")
    assert_seed_error(service.http.post("/v2/create", json={"secret": 12345, "tasks": {"task_name": "hello"}}),
                      401, "secret", "invalid secret key")
    # a parameter of the wrong type: the task exists and says which field is wrong
    status = service.run([{"task_name": "image.thumb", "url": ["http://a/b.jpg"], "width": {"px": 3}}])
    assert status["status"] == "error" and set(status["error"]["parameters"]) == {"url", "width"}, status
    assert status["error"]["parameters"]["width"] == ["Input should be a valid integer"]


def test_unknown_task_names_are_400_and_not_echoed_in_full(service):
    description = assert_seed_error(service.create({"task_name": "image.nope"}), 400, "tasks.0.task_name",
                                    "unknown task_name 'image.nope'", "image.thumb")
    assert "known tasks:" in description
    huge = assert_seed_error(service.create({"task_name": "x" * 100_000}), 400, "tasks.0.task_name",
                             "100002 characters")
    assert len(huge) < 1000


def test_ten_thousand_tasks_in_one_create_are_refused_with_the_limit(service):
    account = json.loads(service.cli("account", "create", "ten-thousand").stdout)
    started = time.monotonic()
    response = service.create([{"task_name": "hello", "name": str(i)} for i in range(10_000)],
                              secret=account["secret"])
    assert time.monotonic() - started < 10
    assert_seed_error(response, 400, "tasks", "10000 tasks in one request", "limit of 1000")
    assert account_runs(service, "ten-thousand") == 0  # nothing was queued


def raw_request(service, head: bytes, chunks: list[bytes] = ()) -> tuple[int, dict, bytes]:
    """Send ``head`` (and ``chunks``) on a socket and read the answer: (status, headers, body)."""
    address = urlsplit(service.api)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_a_50_mb_body_is_refused_with_413_without_being_read(service):
    big = 50 * 1024 * 1024
    started = time.monotonic()
    # Content-Length says 50 MB and not one byte of it is sent: the answer comes anyway
    status, headers, body = raw_request(
        service, b"POST /v2/create HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % big)
    assert time.monotonic() - started < 5
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "error", "errors": [{
        "name": "body", "location": "body", "description": "the request body is over the limit of 10485760 bytes"}]}
    # a streamed (chunked) body is cut once it passes the limit: 12 of its 50 MB are sent
    chunk = b"x" * (1 << 20)
    status, _, body = raw_request(service, b"POST /v1/create HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n",
                                  [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 12)
    assert status == 413 and json.loads(body)["errors"][0]["name"] == "body"
    # the VimQu surface answers in its own envelope
    status, _, body = raw_request(service, b"POST /api/task HTTP/1.1\r\nHost: api\r\nContent-Length: %d\r\n\r\n" % big)
    assert status == 413 and "too large" in json.loads(body)["message"]
    # a client that sends it all gets the same answer
    sent = httpx.post(service.api + "/v2/create", content=b"x" * big, timeout=60)
    assert_seed_error(sent, 413, "body", "10485760")


def test_over_long_strings(service, media):
    secret = service.account["secret"]
    # over Prefect's limit for a run's parameters: 400 naming the task, the limit and the field
    too_long = service.create([{"task_name": "hello", "name": "ok"}, {"task_name": "hello", "name": "n" * 2_000_000}])
    assert_seed_error(too_long, 400, "tasks.1", "over the limit of 524288 bytes", "largest: name")
    # a long URL under it: the task runs and says why it could not fetch
    status = service.run({"task_name": "image.info", "url": f"{media.base}/{'a' * 300_000}.jpg"})
    assert status["status"] == "error" and status["error"].startswith(f"could not fetch {media.base}/aaaa")
    assert status["error"].endswith(".jpg: invalid URL: URL too long")
    long_secret = service.http.post("/v2/create", json={"secret": "s" * 1_000_000, "tasks": {"task_name": "hello"}})
    assert_seed_error(long_secret, 401, "secret", "invalid secret key")
    long_key = service.http.post("/v2/status", json={"secret": secret, "tasks": ["K" * 100_000]})
    assert long_key.status_code == 200 and long_key.json()[0]["error"] == "unknown task key"


# --- addresses (steps: the service allows 127.0.0.1 for its own tests) -------------------


class Recording(BaseHTTPRequestHandler):
    """Answers 200 with a few bytes and records (path, Host header)."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers["Host"]))
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:
        pass


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int = 0):
        super().__init__((host, port), Recording)
        self.seen: list[tuple[str, str]] = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def loopbacks():
    """Servers on 127.0.0.1 and 127.0.0.2, same port."""
    first = Recorder("127.0.0.1")
    second = Recorder("127.0.0.2", first.port)
    yield first, second
    first.stop()
    second.stop()


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "017700000001",
                                  "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]"])
async def test_spellings_of_loopback_are_refused(host, loopbacks, tmp_path):
    """Decimal, octal, hex, short and IPv6-mapped spellings are read as 127.0.0.1 (the
    message names the address) and refused without connecting."""
    server, _ = loopbacks
    url = f"http://{host}:{server.port}/x.bin"
    with pytest.raises(FetchError, match="address 127.0.0.1 of host .* is private/loopback/link-local") as info:
        await fetch.fn(url, tmp_path, settings=cfg())
    assert info.value.code == "refused" and server.seen == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://012.0.0.1/", "http://167772161/", "http://0/",
                                 "http://[fe80::1]/", "http://[fc00::1]/", "http://[2002:7f00:1::1]/",
                                 "http://[2002:a00:1::1]/", "http://[::7f00:1]/", "http://[64:ff9b::a00:1]/"])
async def test_private_ranges_and_embedded_ipv4_are_refused_even_with_loopback_allowed(url, tmp_path):
    """10.x in any spelling, IPv6 private ranges, and IPv6 addresses carrying a private IPv4
    (6to4 ``2002:7f00:1::``, IPv4-compatible, NAT64)."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="is private/loopback/link-local") as info:
        await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))
    assert info.value.code == "refused" and time.monotonic() - started < 1  # refused, never tried


async def test_a_name_that_resolves_to_loopback_is_refused(loopbacks, tmp_path):
    server, _ = loopbacks
    for host in ("localhost", "LOCALHOST", "LocalHost"):
        with pytest.raises(FetchError, match=f"address 127.0.0.1 of host {host.lower()} is private"):
            await fetch.fn(f"http://{host}:{server.port}/x.bin", tmp_path, settings=cfg())
    assert server.seen == []


async def test_a_redirect_to_a_spelled_private_address_is_refused(loopbacks, tmp_path):
    """The redirect hop is checked after resolution too: 127.0.0.2 spelled as a decimal."""
    first, second = loopbacks

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://2130706434:{first.port}/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{redirector.server_address[1]}/go"
        with pytest.raises(FetchError, match="redirected to .*2130706434.*address 127.0.0.2 .* is private"):
            await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert second.seen == []


async def test_dns_rebinding_between_check_and_connect_goes_to_the_checked_address(loopbacks, tmp_path, monkeypatch):
    """A name that resolves to an allowed address when checked, then to another one: the
    download connects to the checked address (one lookup, Host header kept), while a client
    that resolves again would land on the second address."""
    checked, rebound = loopbacks
    lookups: list[str] = []
    resolve = socket.getaddrinfo

    def rebinding_dns(host, port, *args, **kwargs):  # the system resolver, answering like a rebinding DNS
        if host == "rebind.test":
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    url = f"http://rebind.test:{checked.port}/data.bin"
    path = await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))
    assert path.read_bytes() == b"hello"
    assert checked.seen == [("/data.bin", f"rebind.test:{checked.port}")] and rebound.seen == []
    assert lookups == ["rebind.test"]
    # the rebinding is real: resolving again reaches the other address
    assert (await asyncio.to_thread(httpx.get, url)).status_code == 200
    assert rebound.seen == [("/data.bin", f"rebind.test:{checked.port}")]


def test_private_addresses_through_the_service_are_task_errors(service):
    urls = ["http://10.0.0.1/a.jpg", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/a.jpg",
            "http://0x7f000002/a.jpg", "http://[::ffff:169.254.169.254]/", "http://[2002:a9fe:a9fe::1]/"]
    statuses = run_many(service, [{"task_name": "image.info", "url": url} for url in urls])
    for url, status in zip(urls, statuses):
        assert status["status"] == "error", status
        assert status["error"].startswith(f"could not fetch {url}: address ") and "DRAGONFLOW_FETCH_ALLOW" in status["error"]


# --- media -------------------------------------------------------------------------------


def webp_bomb(width: int, height: int) -> bytes:
    """A 32-byte lossless WebP of ``width``×``height`` pixels of one colour: each prefix code
    has a single symbol, so every pixel costs 0 bits (decoding it would fill the canvas)."""
    fields = [(0x2F, 8), (width - 1, 14), (height - 1, 14), (0, 1), (0, 3),  # VP8L header
              (0, 1), (0, 1), (0, 1)]  # no transform, no colour cache, no meta prefix codes
    fields += [(1, 1), (0, 1), (0, 1), (0, 1)] * 5  # 5 simple prefix codes of one symbol, 0
    value = shift = 0
    for bits, count in fields:
        value |= bits << shift
        shift += count
    data = value.to_bytes((shift + 7) // 8 + 4, "little")
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif_bomb(width: int, height: int) -> bytes:
    """A 1-pixel GIF whose logical screen (the image size) is ``width``×``height``."""
    out = io.BytesIO()
    Image.new("P", (1, 1)).save(out, "GIF")
    data = bytearray(out.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bombs(directory: Path) -> dict[str, Path]:
    """Small files declaring huge images, one per format, some under Pillow's own limit."""
    files = {"bomb.webp": webp_bomb(16384, 16384), "mid.webp": webp_bomb(12000, 12000),
             "bomb.gif": gif_bomb(65535, 65535), "mid.gif": gif_bomb(12000, 12000)}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    png_header(directory / "bomb.png", 30000, 30000)
    png_header(directory / "mid.png", 12000, 12000)
    return {name: directory / name for name in [*files, "bomb.png", "mid.png"]}


def test_the_webp_bomb_is_a_real_image(tmp_path):
    """The generator makes valid WebP: a small one decodes."""
    (tmp_path / "small.webp").write_bytes(webp_bomb(64, 48))
    with Image.open(tmp_path / "small.webp") as img:
        img.load()
        assert img.size == (64, 48) and img.getpixel((10, 10)) == (0, 0, 0)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import _webp

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(_webp, "WebPAnimDecoder", no_decoding)  # allocates the whole canvas when made
    for name, path in bombs(tmp_path).items():
        with pytest.raises(TaskError, match=r"over the limit of 100000000 \(DRAGONFLOW_MAX_IMAGE_PIXELS\);"
                                            " refused before decoding"):
            probe_image(path, max_pixels=100_000_000)


def test_decompression_bombs_through_the_service(service, media):
    names = list(bombs(media.directory))
    statuses = run_many(service, [{"task_name": "image.thumb", "url": f"{media.base}/{n}", "width": 100} for n in names])
    for name, status in zip(names, statuses):
        assert status["status"] == "error", (name, status)
        assert "pixels, over the limit of 100000000" in status["error"], (name, status["error"])
        assert f"{media.base}/{name}" in status["error"]


@pytest.fixture
def fifo(tmp_path) -> Path:
    """A named pipe nobody writes to: a reader blocks on it for ever, as on a decoder that hangs."""
    path = tmp_path / "stuck.wav"
    os.mkfifo(path)
    return path


async def test_a_hanging_probe_is_killed_at_its_timeout(fifo):
    started = time.monotonic()
    with pytest.raises(TaskError, match="^ffprobe took longer than 1 s and was stopped$"):
        await probe_media(fifo, timeout=1)
    assert 1 <= time.monotonic() - started < 3


async def test_a_hanging_decode_is_killed_at_its_timeout(fifo, tmp_path):
    started = time.monotonic()
    with pytest.raises(TaskError, match="^ffmpeg took longer than 1 s and was stopped$"):
        await run_ffmpeg([*input_args(fifo, "wav"), "-f", "null", "-"], timeout=1)
    assert 1 <= time.monotonic() - started < 3
    assert ffmpeg_children() == []


@pytest.fixture
def playlists(media) -> dict[str, str]:
    """HLS and concat playlists naming local files (a copied segment and /etc/passwd), served."""
    segment = media.directory / "hostile-seg.ts"
    if not segment.exists():
        import subprocess

        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "mp2", "-f", "mpegts",
                        str(segment)], check=True, timeout=60)
    return {name: f"{media.base}/{name}" for name in _playlists(media.directory, segment)}


def test_playlists_naming_local_files_are_refused_by_audio_tasks(service, playlists):
    names = list(playlists)
    tasks = [{"task_name": task, "url": playlists[name]} for task in ("audio.info", "audio.convert") for name in names]
    for task, status in zip(tasks, run_many(service, tasks)):
        assert status["status"] == "error", (task, status)
        assert "is not accepted (playlists, concat lists" in status["error"], (task, status["error"])
        assert "root:" not in status["error"] and "/etc/passwd" not in status["error"]


# --- accounts ----------------------------------------------------------------------------


def test_another_accounts_keys_and_files(service, media):
    owner = json.loads(service.cli("account", "create", "owner").stdout)
    intruder = json.loads(service.cli("account", "create", "intruder").stdout)
    done = service.run({"task_name": "image.thumb", "url": media.image("owned.jpg", size=(80, 60)), "width": 40},
                       secret=owner["secret"])
    key, output = done["key"], done["result"]["output"]
    secret = intruder["secret"]

    def no_leak(response: httpx.Response) -> None:
        assert output not in response.text and "owned" not in response.text and "owner" not in response.text

    file = service.http.get("/v1/file/output.jpg", params={"task": key, "secret": secret})
    assert_seed_error(file, 404, "task", "unknown task key")
    no_leak(file)
    details = service.http.get("/v2/status", params={"tasks": key, "secret": secret, "details": "true"})
    assert details.json() == [{"status": "error", "key": key, "progress": None, "events": {},
                               "error": "unknown task key"}]
    with service.http.stream("GET", "/v2/status_stream", params={"tasks": key, "secret": secret}) as stream:
        lines = [json.loads(line) for line in stream.iter_lines() if line.strip()]
    assert lines == [details.json()]
    for path in ("../owner", "..%2Fowner", "%2E%2E/owner/" + key):
        listing = service.http.get(f"/v2/storage/files/{path}", params={"secret": secret, "recursive": "true"})
        assert listing.status_code in (400, 404), listing.text
        no_leak(listing)
    deleted = service.http.request("DELETE", "/v2/storage/files", json={"secret": secret, "urls": [output]})
    assert deleted.json()["deleted"] == [] and httpx.get(output).status_code == 200
    unauthenticated = service.http.get("/v1/file/output.jpg", params={"task": key})
    assert_seed_error(unauthenticated, 401, "secret")


# --- the error contract on every route ----------------------------------------------------


def routes(service) -> list[str]:
    """Every path the API serves, with its parameters filled in."""
    paths = service.http.get("/openapi.json").json()["paths"]
    filled = {"{filename}": "out.jpg", "{path}": "a/b", "{task}": "NOSUCHTASK", "{storage_id}": "nope"}
    found = []
    for path in [*paths, "/storage/{store}/{path}", "/v2/nothing", "/api/nothing"]:
        for name, value in {**filled, "{store}": "persistent"}.items():
            path = path.replace(name, value)
        found.append(path)
    return found


def assert_error_shape(response: httpx.Response, where: str) -> None:
    assert response.headers.get("content-type", "").startswith("application/json"), (where, response.text[:200])
    body = response.json()
    assert "detail" not in body, (where, body)
    if urlsplit(str(response.url)).path.startswith("/api/"):
        assert isinstance(body.get("message"), str) and body["message"], (where, body)
    else:
        assert body["status"] == "error" and body["errors"], (where, body)
        assert all(set(e) == {"name", "location", "description"} and e["description"] for e in body["errors"]), body


def test_no_error_escapes_the_seed_shape(service):
    """Each route, with each method (and an unknown one), a broken body and broken query
    parameters, without credentials: whatever the status, an error is in the surface's shape."""
    seen = set()
    for path in routes(service):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "BREW"):
            response = service.http.request(method, path, content=b'{"tasks": [', params={
                "tasks": ["", "\x00"], "block": "maybe", "details": "[]", "recursive": "{", "limit": "-1", "page": "x"})
            if response.status_code >= 400:
                assert_error_shape(response, f"{method} {path}")
                seen.add(response.status_code)
    assert {400, 401, 404, 405} <= seen, seen
    # Starlette's CORS refusal is text/plain of its own
    preflight = service.http.options("/v2/create", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "POST"})
    assert_seed_error(preflight, 400, "origin", "Disallowed CORS origin")
    assert "access-control-allow-origin" not in preflight.headers


# --- and the service still serves -----------------------------------------------------------


def test_the_service_still_serves_a_normal_task(service, media):
    health = service.http.get("/healthz")
    assert health.status_code == 200, health.text
    status = service.run({"task_name": "image.thumb", "url": media.image("after.jpg", size=(120, 90)), "width": 60})
    assert status["status"] == "success", status
    assert (status["result"]["width"], status["result"]["height"]) == (60, 45)
    assert Image.open(io.BytesIO(httpx.get(status["result"]["output"]).content)).size == (60, 45)

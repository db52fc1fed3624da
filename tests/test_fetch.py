"""flows.steps.fetch against real HTTP servers on 127.0.0.1 (and 127.0.0.2) and real
storage blocks; ``fetch.fn`` is the plain coroutine, ``fetch`` the Prefect task (retries)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.errors import FetchError
from flows.settings import Settings
from flows.steps import sources
from flows.steps.fetch import fetch
from tests.conftest import OWN
from flows.contract.net import check_url_allowed

BLOB = os.urandom(200_000)
LIMIT = 10_000


class Handler(BaseHTTPRequestHandler):
    """Routes: /data/*, /big, /nolength, /missing, /slow, /redirect?to=, /chain/N, /rel,
    /flaky/* (503 on the first request of each path), /busy (always 429)."""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: bool = True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if path.startswith("/data/"):
            self._send(200, BLOB)
        elif path == "/big":
            self._send(200, BLOB[: LIMIT + 1])
        elif path == "/nolength":  # HTTP/1.0, body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            for i in range(0, len(BLOB), 1000):
                self.wfile.write(BLOB[i : i + 1000])
        elif path == "/missing":
            self._send(404, b"nope")
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/redirect":
            self._send(302, headers={"Location": query["to"][0]})
        elif path.startswith("/chain/"):
            self._send(302, headers={"Location": f"/chain/{int(path.rsplit('/', 1)[1]) + 1}"})
        elif path == "/rel":
            self._send(301, headers={"Location": "data/relative.bin"})
        elif path.startswith("/flaky/"):
            self._send(200 if self.server.seen.count(self.path) > 1 else 503, BLOB)
        elif path == "/busy":
            self._send(429)
        else:
            self._send(500)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str):
        super().__init__((host, 0), Handler)
        self.seen: list[str] = []
        self.base = f"http://{host}:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # the client hanging up mid-body (size limit, timeout) is expected


@pytest.fixture(scope="module")
def servers():
    started = [Server("127.0.0.1"), Server("127.0.0.2")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in started]
    for thread in threads:
        thread.start()
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def srv(servers):
    """The 127.0.0.1 server, its request log cleared."""
    for server in servers:
        server.seen.clear()
    return servers[0]


@pytest.fixture
def other(servers):
    """The 127.0.0.2 server (cleared by ``srv``)."""
    return servers[1]


pytestmark = pytest.mark.usefixtures("own_stores")  # real storage blocks (conftest)


@pytest.fixture
def no_http(monkeypatch):
    """Fail the test if fetch sends any HTTP request."""

    async def _send(*args, **kwargs):
        raise AssertionError("an HTTP request was sent")

    monkeypatch.setattr(httpx.AsyncClient, "send", _send)


def cfg(*allow: str, **kw) -> Settings:
    return Settings(fetch_allow=list(allow), **{"fetch_max_bytes": LIMIT * 100, "fetch_timeout": 5.0, **kw})


async def test_download_allowed(srv, tmp_path):
    dest = tmp_path / "in"
    path = await fetch.fn(f"{srv.base}/data/clip.mp4?x=1", dest, settings=cfg("127.0.0.1", fetch_max_bytes=len(BLOB)))
    assert path.parent == dest and path.name == "clip.mp4"
    assert path.read_bytes() == BLOB
    assert srv.seen == ["/data/clip.mp4?x=1"]


async def test_names_are_safe_and_unique(srv, tmp_path):
    settings = cfg("127.0.0.1", fetch_max_bytes=len(BLOB))
    first = await fetch.fn(f"{srv.base}/data/a.gif", tmp_path, settings=settings)
    second = await fetch.fn(f"{srv.base}/data/a.gif", tmp_path, settings=settings)
    odd = await fetch.fn(f"{srv.base}/data/..%2F..%2Fevil%20name.PNG", tmp_path, settings=settings)
    bare = await fetch.fn(f"{srv.base}/data/", tmp_path, settings=settings)
    assert [first.name, second.name] == ["a.gif", "a-1.gif"]
    assert odd.name == "evil_name.PNG" and odd.parent == tmp_path
    assert bare.name == "input"
    assert all(p.read_bytes() == BLOB for p in (first, second, odd, bare))


async def test_loopback_refused_by_default(srv, tmp_path):
    url = f"{srv.base}/data/x.bin"
    with pytest.raises(FetchError) as info:
        await fetch.fn(url, tmp_path, settings=cfg())
    message = str(info.value)
    assert message.startswith(f"could not fetch {url}: ")
    assert "address 127.0.0.1 of host 127.0.0.1 is private" in message and "DRAGONFLOW_FETCH_ALLOW" in message
    assert srv.seen == [] and list(tmp_path.iterdir()) == []


async def test_other_loopback_address_not_covered_by_single_ip(srv, other, tmp_path):
    with pytest.raises(FetchError, match="address 127.0.0.2 of host 127.0.0.2"):
        await fetch.fn(f"{other.base}/data/x.bin", tmp_path, settings=cfg("127.0.0.1"))
    assert other.seen == []


async def test_cidr_entry_allows(srv, other, tmp_path):
    path = await fetch.fn(f"{other.base}/data/x.bin", tmp_path, settings=cfg("127.0.0.0/8", fetch_max_bytes=len(BLOB)))
    assert path.read_bytes() == BLOB and other.seen == ["/data/x.bin"]


async def test_hostname_entry_allows(srv, tmp_path):
    port = srv.server_address[1]
    path = await fetch.fn(f"http://localhost:{port}/data/", tmp_path, settings=cfg("localhost", fetch_max_bytes=len(BLOB)))
    assert path.read_bytes() == BLOB
    with pytest.raises(FetchError, match="host localhost"):
        await fetch.fn(f"http://localhost:{port}/data/", tmp_path, settings=cfg("example.com"))


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:80/", "http://[::1]/",
                                 "http://[::ffff:10.1.2.3]/", "http://224.0.0.1/", "http://100.64.0.1/"])
async def test_internal_addresses_refused_before_connecting(url, no_http, tmp_path):
    with pytest.raises(FetchError, match="private/loopback/link-local"):
        await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://x/", "http:///nohost"])
async def test_other_schemes_refused(url, no_http, tmp_path):
    with pytest.raises(FetchError, match="only http and https URLs are accepted"):
        await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))


async def test_unresolvable_host(no_http, tmp_path):
    with pytest.raises(FetchError, match="could not resolve host"):
        await fetch.fn("http://nonexistent.invalid/x", tmp_path, settings=cfg())


async def test_check_url_allowed_returns_addresses():
    assert [str(ip) for ip in await check_url_allowed("http://127.0.0.1:1/", cfg("127.0.0.1/32"))] == ["127.0.0.1"]
    assert [str(ip) for ip in await check_url_allowed("https://8.8.8.8/", cfg())] == ["8.8.8.8"]


async def test_redirects_followed(srv, tmp_path):
    settings = cfg("127.0.0.1", fetch_max_bytes=len(BLOB))
    target = f"{srv.base}/data/final.bin"
    path = await fetch.fn(f"{srv.base}/redirect?to={target}", tmp_path, settings=settings)
    assert path.read_bytes() == BLOB and path.name == "redirect"
    relative = await fetch.fn(f"{srv.base}/rel", tmp_path, settings=settings)
    assert relative.read_bytes() == BLOB
    assert srv.seen == [f"/redirect?to={target}", "/data/final.bin", "/rel", "/data/relative.bin"]


async def test_too_many_redirects(srv, tmp_path):
    with pytest.raises(FetchError, match=r"too many redirects \(more than 2\)"):
        await fetch.fn(f"{srv.base}/chain/0", tmp_path, settings=cfg("127.0.0.1", fetch_max_redirects=2))
    assert srv.seen == ["/chain/0", "/chain/1", "/chain/2"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("to", ["http://127.0.0.2:{port2}/data/x", "http://169.254.169.254/", "file:///etc/passwd"])
async def test_redirect_to_refused_url(to, srv, other, tmp_path):
    to = to.format(port2=other.server_address[1])
    url = f"{srv.base}/redirect?to={to}"
    with pytest.raises(FetchError) as info:
        await fetch.fn(url, tmp_path, settings=cfg("127.0.0.1"))
    assert str(info.value).startswith(f"could not fetch {url}: redirected to {to}: ")
    assert srv.seen == [f"/redirect?to={to}"] and other.seen == []
    assert list(tmp_path.iterdir()) == []


async def test_http_error_status(srv, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404 Not Found"):
        await fetch.fn(f"{srv.base}/missing", tmp_path, settings=cfg("127.0.0.1"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("route", ["/big", "/nolength"])
async def test_size_limit(route, srv, tmp_path):
    with pytest.raises(FetchError, match=f"too large: .*limit of {LIMIT} bytes"):
        await fetch.fn(f"{srv.base}{route}", tmp_path, settings=cfg("127.0.0.1", fetch_max_bytes=LIMIT))
    assert srv.seen == [route]
    assert list(tmp_path.iterdir()) == []


async def test_no_length_within_limit(srv, tmp_path):
    path = await fetch.fn(f"{srv.base}/nolength", tmp_path, settings=cfg("127.0.0.1", fetch_max_bytes=len(BLOB)))
    assert path.read_bytes() == BLOB


async def test_timeout(srv, tmp_path):
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0.5 s \(\d+ bytes written; the limit is DRAGONFLOW_FETCH_TIMEOUT\)"):
        await fetch.fn(f"{srv.base}/slow", tmp_path, settings=cfg("127.0.0.1", fetch_timeout=0.5))
    assert time.monotonic() - start < 1.4
    assert list(tmp_path.iterdir()) == []


async def test_own_storage_copied_without_http(own_stores, tmp_path, no_http):
    """Our own output URL is found by the real block lookup and read from storage."""
    url = await own_stores["volatile"].put(_blob_file(tmp_path), "acct/KEY/output.jpg")
    assert url == f"{OWN}/volatile/acct/KEY/output.jpg"
    path = await fetch.fn(url + "?v=1", tmp_path / "in", settings=cfg())  # own.test does not even resolve
    assert path == tmp_path / "in" / "output.jpg" and path.read_bytes() == BLOB


async def test_missing_own_file_is_not_found(tmp_path, no_http):
    with pytest.raises(FetchError, match="stored file not found") as info:
        await fetch.fn(f"{OWN}/persistent/acct/KEY/gone.jpg", tmp_path, settings=cfg())
    assert info.value.code == "not_found" and not info.value.transient
    assert list(tmp_path.iterdir()) == []


async def test_registered_storage_urls_need_a_storage_of_the_running_task(tmp_path, no_http):
    """``storage://ID/path`` is read only from a storage the running task's account
    registered (tests/test_registered_storages.py reads one); outside a task, or with an
    unknown ID, it is refused."""
    assert await sources.registered_of_the_run("any-id") is None
    with pytest.raises(FetchError, match="only http and https URLs are accepted") as info:
        await fetch.fn("storage://s2/clips/a.mp4", tmp_path / "in", settings=cfg())
    assert info.value.code == "bad_request"


def _blob_file(tmp_path):
    local = tmp_path / "blob.jpg"
    local.write_bytes(BLOB)
    return local


@pytest.mark.parametrize("route, code, transient", [
    ("/missing", "not_found", False), ("/busy", "upstream", True), ("/flaky/x.bin", "upstream", True),
    ("/big", "too_large", False), ("/slow", "timeout", True), ("/chain/0", "upstream", False),
])
async def test_error_codes(route, code, transient, srv, tmp_path):
    with pytest.raises(FetchError) as info:
        await fetch.fn(f"{srv.base}{route}", tmp_path, settings=cfg("127.0.0.1", fetch_max_bytes=LIMIT,
                                                                     fetch_timeout=0.5, fetch_max_redirects=1))
    assert (info.value.code, info.value.transient) == (code, transient)


async def test_refused_and_bad_request_codes(srv, tmp_path):
    with pytest.raises(FetchError) as refused:
        await fetch.fn(f"{srv.base}/data/x", tmp_path, settings=cfg())
    with pytest.raises(FetchError) as bad:
        await fetch.fn("ftp://example.com/x", tmp_path, settings=cfg())
    assert (refused.value.code, bad.value.code) == ("refused", "bad_request")
    assert not refused.value.transient and not bad.value.transient


async def task_runs_of(flow_run_id, count: int) -> list:
    """The flow run's ``count`` task runs once all are final (the server records them from events)."""
    async with get_client() as client:
        for _ in range(100):
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) == count and all(run.state and run.state.is_final() for run in runs):
                return runs
            await asyncio.sleep(0.1)
    raise AssertionError(f"task runs of {flow_run_id}: {[(r.name, r.state) for r in runs]}")


@pytest.fixture
def prefect_api(service):
    with temporary_settings({PREFECT_API_URL: service.prefect_api}):
        yield


async def test_fetch_task_retries_transient_errors_only(srv, tmp_path, prefect_api):
    """As a Prefect task: a 503 is retried and then succeeds, a 404 is tried once and
    leaves a Failed task run naming the URL; runs are named ``fetch <file>``."""
    settings = cfg("127.0.0.1", fetch_max_bytes=len(BLOB))

    @flow
    async def fetch_two(dest):
        first = await fetch(f"{srv.base}/flaky/photo.jpg", dest, settings=settings)
        try:
            await fetch(f"{srv.base}/missing", dest, settings=settings)
        except FetchError as exc:
            return first, exc
        raise AssertionError("the 404 was fetched")

    state = await fetch_two(tmp_path, return_state=True)
    path, error = await state.result()
    assert path.read_bytes() == BLOB and error.code == "not_found"
    assert srv.seen == ["/flaky/photo.jpg", "/flaky/photo.jpg", "/missing"]
    runs = await task_runs_of(state.state_details.flow_run_id, 2)
    by_name = {run.name: run for run in runs}
    assert set(by_name) == {"fetch photo.jpg", "fetch missing"}
    assert by_name["fetch photo.jpg"].state.is_completed() and by_name["fetch photo.jpg"].run_count == 2
    failed = by_name["fetch missing"]
    assert failed.state.is_failed() and failed.run_count == 1 and f"{srv.base}/missing" in failed.state.message


async def test_callbacks_go_to_the_checked_address_under_the_same_rules(callbacks, monkeypatch):
    """post_status resolves the host once, checks it like fetch and posts to that address
    (Host kept); a private address that is not allowed gets nothing."""
    from flows.steps import notify

    url = callbacks.url("/pinned").replace("127.0.0.1", "localhost")
    monkeypatch.setattr(notify, "get_settings", lambda: Settings(fetch_allow=["localhost"], callback_attempts=1))
    assert await notify.post_status(url, {"status": "success", "key": "K1"})
    assert callbacks.wait("/pinned", timeout=5) == {"status": "success", "key": "K1"}

    monkeypatch.setattr(notify, "get_settings", lambda: Settings(fetch_allow=[], callback_attempts=1))
    assert not await notify.post_status(callbacks.url("/refused"), {"status": "success"})
    with pytest.raises(AssertionError, match="no callback"):
        callbacks.wait("/refused", timeout=0.5)

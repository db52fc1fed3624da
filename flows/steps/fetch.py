"""Download a task's input URL into the run's scratch directory, refusing internal addresses."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import shutil
import socket
import ssl
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from blocks import storage
from flows.errors import FetchError
from flows.settings import Settings, get_settings

USER_AGENT = "dragonflow-fetch/0.1"
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One certificate store per process for every outgoing request (loading the CA
    bundle costs ~30 ms of CPU, so a client per request would pay it each time)."""
    return httpx.create_ssl_context()


def _check_scheme(url: str):
    """``urlsplit(url)``; FetchError unless it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(url, "only http and https URLs are accepted")
    return parts


def _is_internal(ip: IPAddress) -> bool:
    """True for any address that is not a plain public unicast address."""
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def _allowed(host: str, ip: IPAddress, allow: list[str]) -> bool:
    """True when ``host`` or ``ip`` matches an entry (host name, IP or CIDR) of ``allow``."""
    for entry in allow:
        entry = entry.strip().strip("[]").rstrip(".").lower()
        if entry == host:
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


async def check_url_allowed(url: str, settings: Settings | None = None) -> list[IPAddress]:
    """The addresses of ``url``'s host; FetchError unless it is http(s) and all may be fetched."""
    settings = settings or get_settings()
    parts = _check_scheme(url)
    host = parts.hostname.rstrip(".").lower()
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as exc:
        raise FetchError(url, f"could not resolve host {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if _is_internal(ip) and not _allowed(host, ip, settings.fetch_allow):
            raise FetchError(url, f"address {ip} of host {host} is private/loopback/link-local"
                                  " and not in DRAGONFLOW_FETCH_ALLOW")
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _claim_path(url: str, dest_dir: Path) -> Path:
    """Create and return a new empty file in ``dest_dir`` named after the URL path."""
    name = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "input"
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    stem, ext = stem[:100] or "input", ext[:16]
    for n in range(10_000):
        candidate = dest_dir / f"{stem}{'-%d' % n if n else ''}{dot}{ext}"
        try:
            candidate.open("xb").close()
            return candidate
        except FileExistsError:
            continue
    raise FetchError(url, f"too many files named {name} in {dest_dir}")


async def send_pinned(
    client: httpx.AsyncClient, url: str, addresses: list[IPAddress], *, method: str = "GET", json: object = None
) -> httpx.Response:
    """Send ``method url`` to the first reachable of its checked ``addresses`` (no second DNS
    lookup, so the host cannot switch to an internal address; Host and SNI kept). The
    response is streamed: close it."""
    parts = httpx.URL(url)
    headers = {"Host": parts.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}

    def request(ip: IPAddress) -> httpx.Request:
        return client.build_request(method, parts.copy_with(host=str(ip)), headers=headers, json=json,
                                    extensions={"sni_hostname": parts.host})

    for ip in addresses[:-1]:
        try:
            return await client.send(request(ip), stream=True)
        except httpx.ConnectError:
            continue
    return await client.send(request(addresses[-1]), stream=True)


async def _download(url: str, target: Path, settings: Settings) -> None:
    """Stream ``url`` (following checked redirects) into ``target``."""
    stored = await storage.open_stored(url)
    if stored is not None:
        fs, path = stored

        def _copy() -> None:
            with fs.open(path, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)

        try:
            return await asyncio.to_thread(_copy)
        except OSError as exc:
            raise FetchError(url, f"stored file unreadable: {exc}") from None
    limit = settings.fetch_max_bytes
    timeout = httpx.Timeout(settings.fetch_timeout, connect=min(settings.fetch_timeout, 30.0))
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout, verify=tls_context()) as client:
        current = url
        for _ in range(settings.fetch_max_redirects + 1):
            where = "" if current == url else f"redirected to {current}: "
            try:
                addresses = await check_url_allowed(current, settings)
            except FetchError as exc:
                raise FetchError(url, where + exc.reason) from None
            response = await send_pinned(client, current, addresses)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code >= 300:
                    raise FetchError(url, where + f"HTTP {response.status_code} {response.reason_phrase}")
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise FetchError(url, f"too large: {length} bytes > limit of {limit} bytes")
                received = 0
                with target.open("wb") as out:
                    async for chunk in response.aiter_raw(_CHUNK):
                        received += len(chunk)
                        if received > limit:
                            raise FetchError(url, f"too large: more than limit of {limit} bytes")
                        out.write(chunk)
                return
            finally:
                await response.aclose()
        raise FetchError(url, f"too many redirects (more than {settings.fetch_max_redirects})")


async def fetch(url: str, dest_dir: Path, *, settings: Settings | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` (created) and return the new file's path.

    Raises FetchError for any failure; no partial file is left behind.
    """
    settings = settings or get_settings()
    _check_scheme(url)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = _claim_path(url, dest_dir)
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            await _download(url, target, settings)
    except BaseException as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
            raise FetchError(url, f"timed out after {settings.fetch_timeout:g} s") from None
        if isinstance(exc, (httpx.HTTPError, httpx.InvalidURL, OSError)):
            raise FetchError(url, f"download failed: {type(exc).__name__}: {exc}") from None
        raise
    return target

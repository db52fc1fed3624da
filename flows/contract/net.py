"""The address rules of every outgoing request to a client-given URL (fetch, callbacks,
webhooks, the VimQu API's input check), below both the steps and the API.

A URL is reached only over http(s), at the addresses its host resolved to when it was
checked (``check_url_allowed``), and never at a private, loopback or link-local address
unless ``DRAGONFLOW_FETCH_ALLOW`` lists the host or a network holding it. ``send_pinned``
sends to those checked addresses (no second DNS lookup, so the host cannot switch to an
internal address between the check and the request; Host and SNI are kept).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

import httpx

from flows.errors import FetchError
from flows.settings import Settings, get_settings

USER_AGENT = "dragonflow-fetch/0.1"
REDIRECTS = {301, 302, 303, 307, 308}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One certificate store per process for every outgoing request (loading the CA
    bundle costs ~30 ms of CPU, so a client per request would pay it each time)."""
    return httpx.create_ssl_context()


def is_internal(ip: IPAddress) -> bool:
    """True for any address that is not a plain public unicast address, and for an IPv6
    address that embeds such an IPv4 address (IPv4-mapped ``::ffff:127.0.0.1``, 6to4
    ``2002:7f00:1::``: a 6to4 relay would carry the request to the embedded address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None and is_internal(embedded):
            return True
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def allowed(host: str, ip: IPAddress, allow: list[str]) -> bool:
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


def is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


async def check_url_allowed(url: str, settings: Settings | None = None) -> list[IPAddress]:
    """The addresses of ``url``'s host; FetchError unless it is http(s) and all may be fetched."""
    settings = settings or get_settings()
    if not is_http(url):
        raise FetchError(url, "only http and https URLs are accepted", "bad_request")
    parts = urlsplit(url)
    host = parts.hostname.rstrip(".").lower()
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as exc:
        raise FetchError(url, f"could not resolve host {host}: {exc}", "not_found") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if is_internal(ip) and not allowed(host, ip, settings.fetch_allow):
            raise FetchError(url, f"address {ip} of host {host} is private/loopback/link-local"
                                  " and not in DRAGONFLOW_FETCH_ALLOW", "refused")
        if ip not in addresses:
            addresses.append(ip)
    return addresses


async def send_pinned(
    client: httpx.AsyncClient,
    url: str,
    addresses: list[IPAddress],
    *,
    method: str = "GET",
    json: object = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send ``method url`` to the first reachable of its checked ``addresses`` (no second DNS
    lookup; Host and SNI kept), with a ``json`` body or raw ``content`` and extra
    ``headers``. The response is streamed: close it."""
    parts = httpx.URL(url)
    sent = {"Host": parts.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept-Encoding": "identity",
            **(headers or {})}

    def request(ip: IPAddress) -> httpx.Request:
        return client.build_request(method, parts.copy_with(host=str(ip)), headers=sent, json=json,
                                    content=content, extensions={"sni_hostname": parts.host})

    for ip in addresses[:-1]:
        try:
            return await client.send(request(ip), stream=True)
        except httpx.ConnectError:
            continue
    return await client.send(request(addresses[-1]), stream=True)

"""The input check of a VimQu task at creation (seed 003): the input must answer within
``vimqu_input_timeout`` seconds (12) and look like a media file, else 422 naming the input
and the reason.

- ``url``: a GET of its first bytes under the same address rules as fetch
  (``flows.contract.net``: http(s) only, no private addresses unless
  ``DRAGONFLOW_FETCH_ALLOW`` lists them, redirects re-checked); a media content type
  (``video/*``, ``audio/*``, HLS/DASH manifests) or media magic bytes.
- ``storage``: the file exists on the account's registered storage, is not a directory, and
  has media magic bytes or a media file extension.
"""

from __future__ import annotations

import asyncio
import posixpath
from urllib.parse import urljoin

import httpx

from api.vimqu.errors import scrub
from blocks.registered import RegisteredStorage, StorageUnavailable
from flows.contract.net import REDIRECTS, check_url_allowed, send_pinned, tls_context
from flows.errors import FetchError
from flows.settings import get_settings

HEAD_BYTES = 4096
MEDIA_TYPES = ("video/", "audio/")
MANIFEST_TYPES = ("application/vnd.apple.mpegurl", "application/x-mpegurl", "application/dash+xml",
                  "application/mp4", "application/ogg", "application/mxf")
MEDIA_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".ts", ".mts", ".m2ts",
    ".mpg", ".mpeg", ".vob", ".3gp", ".3g2", ".ogv", ".ogg", ".mxf", ".m4a", ".mp3", ".aac", ".wav", ".flac",
    ".opus", ".oga", ".m3u8", ".mpd", ".y4m", ".dv", ".gif",
}


class InputProblem(ValueError):
    """Why the input cannot be used (the 422 message's reason)."""


def looks_like_media(head: bytes) -> bool:
    """True when the first bytes of a file are those of a media container or stream."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return True  # ISO BMFF / QuickTime (mp4, mov, m4a, 3gp)
    signatures = (b"\x1a\x45\xdf\xa3", b"OggS", b"fLaC", b"ID3", b"FLV\x01", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",
                  b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"#EXTM3U", b"YUV4MPEG2", b"GIF8",
                  b"\x06\x0e\x2b\x34\x02\x05\x01\x01")  # MXF
    if head.startswith(signatures):
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
        return True
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return True  # MPEG-TS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return True  # MPEG audio / ADTS AAC frame
    text = head[:HEAD_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"<?xml") and b"<MPD" in text  # DASH manifest


async def _first_bytes(url: str) -> tuple[str, bytes]:
    """(content type, first bytes) of ``url``; InputProblem on failure."""
    settings = get_settings()
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=tls_context(),
                                 timeout=settings.vimqu_input_timeout) as client:
        current = url
        for _ in range(settings.fetch_max_redirects + 1):
            try:
                addresses = await check_url_allowed(current, settings)
            except FetchError as exc:
                raise InputProblem(exc.reason) from None
            response = await send_pinned(client, current, addresses, headers={"Range": f"bytes=0-{HEAD_BYTES - 1}"})
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise InputProblem(f"HTTP {response.status_code} {response.reason_phrase}")
                head = bytearray()
                async for chunk in response.aiter_raw():
                    head += chunk
                    if len(head) >= HEAD_BYTES:
                        break
                return response.headers.get("content-type", "").split(";")[0].strip().lower(), bytes(head)
            finally:
                await response.aclose()
        raise InputProblem(f"too many redirects (more than {settings.fetch_max_redirects})")


async def check_url_input(url: str) -> None:
    """InputProblem unless ``url`` answers in time with what looks like media."""
    timeout = get_settings().vimqu_input_timeout
    try:
        async with asyncio.timeout(timeout):
            content_type, head = await _first_bytes(url)
    except TimeoutError:
        raise InputProblem(f"no answer within {timeout:g} seconds") from None
    except httpx.HTTPError as exc:
        raise InputProblem(f"cannot be reached: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}") from None
    if content_type.startswith(MEDIA_TYPES) or content_type in MANIFEST_TYPES or looks_like_media(head):
        return
    raise InputProblem(f"is not a media file (content type {content_type or 'none'}"
                       f"{', empty' if not head else ''})")


async def check_storage_input(storage: RegisteredStorage, path: str) -> None:
    """InputProblem unless ``path`` is a media file on ``storage``, found in time."""
    timeout = get_settings().vimqu_input_timeout
    shown = storage.stored_path(path)
    try:
        async with asyncio.timeout(timeout):
            info, head = await storage.head(path, HEAD_BYTES)
    except ValueError as exc:
        raise InputProblem(str(exc)) from None
    except TimeoutError:
        raise InputProblem(f"{storage.driver} storage {storage.name!r} did not answer within {timeout:g} seconds") \
            from None
    except FileNotFoundError:
        raise InputProblem(f"no file {shown} on {storage.driver} storage {storage.name!r}") from None
    except StorageUnavailable as exc:
        raise InputProblem(scrub(str(exc), storage)) from None
    if info.get("type") == "directory":
        raise InputProblem(f"{shown} is a directory on {storage.driver} storage {storage.name!r}")
    if not info.get("size"):
        raise InputProblem(f"{shown} is empty")
    if looks_like_media(head) or posixpath.splitext(shown)[1].lower() in MEDIA_EXTENSIONS:
        return
    raise InputProblem(f"{shown} is not a media file")

"""Find the videos and images an HTML page shows or announces (the ``html.scrape`` task).

Hits come from ``<video>`` (and its ``<source>``s and poster), ``<img>`` (``src``, lazy
``data-src`` and every ``srcset`` candidate), ``<picture><source srcset>``, Open Graph and
Twitter card metadata, and YouTube/Vimeo players embedded with ``<iframe>``, ``<embed>`` or
``<object>``. Every URL is made absolute against the page (or its ``<base href>``), only
http(s) URLs are kept, and each appears once per list.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urldefrag, urljoin, urlsplit

from flows.steps.step import step, step_log

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag

_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "youtube-nocookie.com",
                  "www.youtube-nocookie.com"}
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")
_SIZE = re.compile(r"^\s*(\d+)(?:px)?\s*$")
# Metadata naming a video, a player or an image (their ``:width``/``:height`` follow them).
_META_URLS = {
    "og:video": "video", "og:video:url": "video", "og:video:secure_url": "video",
    "twitter:player:stream": "video", "twitter:player": "player",
    "og:image": "image", "og:image:url": "image", "og:image:secure_url": "image",
    "twitter:image": "image", "twitter:image:src": "image",
}
_SRCSET_URL = re.compile(r"[\s,]*(\S+)")
_SRCSET_DESCRIPTOR = re.compile(r"[^,]*")


@dataclass
class Hit:
    """One video or image: absolute URL, kind (video, youtube, vimeo or image) and size if given."""

    url: str
    kind: str
    width: int | None = None
    height: int | None = None


@dataclass
class _Hits:
    base: str
    videos: dict[str, Hit] = field(default_factory=dict)
    images: dict[str, Hit] = field(default_factory=dict)

    def add_video(self, url: str | None, width=None, height=None) -> None:
        absolute = self._absolute(url)
        if absolute:
            player = embedded_player(absolute)
            kind, absolute = player if player else ("video", absolute)
            self._add(self.videos, Hit(absolute, kind, _size(width), _size(height)))

    def add_player(self, url: str | None, width=None, height=None) -> None:
        """An embedded player: kept only when it is a YouTube or Vimeo one."""
        absolute = self._absolute(url)
        player = embedded_player(absolute) if absolute else None
        if player:
            self._add(self.videos, Hit(player[1], player[0], _size(width), _size(height)))

    def add_image(self, url: str | None, width=None, height=None) -> None:
        absolute = self._absolute(url)
        if absolute:
            self._add(self.images, Hit(absolute, "image", _size(width), _size(height)))

    def add_srcset(self, srcset: str | None) -> None:
        """Every candidate of a ``srcset``; a ``640w`` descriptor gives the width."""
        for url, descriptor in _srcset_candidates(srcset or ""):
            self.add_image(url, descriptor[:-1] if descriptor.endswith("w") else None)

    def _absolute(self, url: str | None) -> str | None:
        url = (url or "").strip()
        if not url or url.startswith("data:"):
            return None
        absolute = urldefrag(urljoin(self.base, url))[0]
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None

    @staticmethod
    def _add(hits: dict[str, Hit], hit: Hit) -> None:
        known = hits.setdefault(hit.url, hit)
        if known.width is None and known.height is None:  # a later mention may give the size
            known.width, known.height = hit.width, hit.height


def embedded_player(url: str) -> tuple[str, str] | None:
    """(``youtube``/``vimeo``, canonical watch URL) when ``url`` is such a video or player."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = [p for p in parts.path.split("/") if p]
    video_id = None
    if host in _YOUTUBE_HOSTS:
        if path and path[0] in ("embed", "v", "shorts", "live") and len(path) > 1:
            video_id = path[1]
        elif path == ["watch"]:
            video_id = (parse_qs(parts.query).get("v") or [None])[0]
    elif host == "youtu.be" and path:
        video_id = path[0]
    if video_id and _YOUTUBE_ID.match(video_id):
        return "youtube", f"https://www.youtube.com/watch?v={video_id}"
    if host in ("vimeo.com", "www.vimeo.com", "player.vimeo.com"):
        numbers = [p for p in path if p.isdigit()]
        if numbers:
            return "vimeo", f"https://vimeo.com/{numbers[0]}"
    return None


def scrape(html: bytes, page_url: str) -> tuple[str | None, dict[str, list[dict]]]:
    """The page's title and its hits: ``{"videos": [...], "images": [...]}``, in page order."""
    from bs4 import BeautifulSoup  # imported on first use: the API process imports this module

    soup = BeautifulSoup(html, "html.parser")
    base_tag = soup.find("base", href=True)
    base = urljoin(page_url, base_tag["href"].strip()) if base_tag else page_url
    hits = _Hits(base)
    _scan_metadata(soup, hits)
    for tag in soup.find_all(["video", "source", "img", "iframe", "embed", "object", "param"]):
        _scan_tag(tag, hits)
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    if not title:
        title = _meta_content(soup, "og:title") or _meta_content(soup, "twitter:title") or ""
    as_dicts = lambda found: [vars(hit).copy() for hit in found.values()]  # noqa: E731
    return title or None, {"videos": as_dicts(hits.videos), "images": as_dicts(hits.images)}


@step("scrape", run_name="scrape {page.name}")
async def scrape_page(page: Path, page_url: str) -> tuple[str | None, dict[str, list[dict]]]:
    """``scrape`` of the page saved at ``page`` (fetched from ``page_url``), off the event loop."""
    html = await asyncio.to_thread(page.read_bytes)
    title, hits = await asyncio.to_thread(scrape, html, page_url)
    step_log("%d bytes, title %r: %d videos, %d images", len(html), title, len(hits["videos"]), len(hits["images"]))
    return title, hits


def _scan_tag(tag: Tag, hits: _Hits) -> None:
    name, get = tag.name, tag.get
    if name == "video":
        hits.add_video(get("src"), get("width"), get("height"))
        hits.add_image(get("poster"))
    elif name == "source":
        parent = tag.find_parent(["video", "picture", "audio"])
        if parent is None or parent.name == "video":
            hits.add_video(get("src"), parent and parent.get("width"), parent and parent.get("height"))
        elif parent.name == "picture":
            hits.add_srcset(get("srcset"))
    elif name == "img":
        hits.add_image(get("src") or get("data-src"), get("width"), get("height"))
        hits.add_srcset(get("srcset") or get("data-srcset"))
    elif name in ("iframe", "embed"):
        hits.add_player(get("src") or get("data-src"), get("width"), get("height"))
    elif name == "object":
        hits.add_player(get("data"), get("width"), get("height"))
    elif name == "param" and str(get("name", "")).lower() in ("movie", "src"):
        hits.add_player(get("value"))


def _scan_metadata(soup: BeautifulSoup, hits: _Hits) -> None:
    """Open Graph and Twitter card videos and images, with the sizes given after each."""
    found: list[tuple[str, str, dict[str, str]]] = []  # (kind, url, sizes) in page order
    for meta in soup.find_all("meta"):
        key = str(meta.get("property") or meta.get("name") or "").strip().lower()
        value = str(meta.get("content") or "").strip()
        if not value:
            continue
        if key in _META_URLS:
            found.append((_META_URLS[key], value, {}))
        elif key.endswith((":width", ":height")):
            prefix, _, side = key.rpartition(":")
            kind = _META_URLS.get(prefix)
            owner = next((item for item in reversed(found) if item[0] == kind), None)
            if owner:
                owner[2].setdefault(side, value)
    for kind, url, sizes in found:
        add = {"video": hits.add_video, "player": hits.add_player, "image": hits.add_image}[kind]
        add(url, sizes.get("width"), sizes.get("height"))


def _meta_content(soup: BeautifulSoup, key: str) -> str | None:
    meta = soup.find("meta", attrs={"property": key}) or soup.find("meta", attrs={"name": key})
    if meta is None:
        return None
    return str(meta.get("content") or "").strip() or None


def _srcset_candidates(srcset: str) -> list[tuple[str, str]]:
    """``srcset`` as (url, descriptor) pairs, split as the HTML standard does (a URL may
    hold commas; a comma ends a candidate after its descriptor)."""
    candidates, position = [], 0
    while match := _SRCSET_URL.match(srcset, position):
        url, position = match[1], match.end()
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            found = _SRCSET_DESCRIPTOR.match(srcset, position)
            descriptor, position = found[0].strip(), found.end() + 1
        if url:
            candidates.append((url, descriptor))
    return candidates


def _size(value) -> int | None:
    """A pixel size attribute ("640", "640px") as a positive int; None otherwise ("100%")."""
    match = _SIZE.match(str(value)) if value is not None else None
    return int(match[1]) if match and int(match[1]) > 0 else None

"""html.scrape: every kind of hit in a page, made absolute and deduplicated; end to end on a
page served locally, with the fetch rules and the page size cap."""

from __future__ import annotations

from flows.settings import get_settings
from flows.steps.html.scrape import embedded_player, scrape

PAGE = """<!doctype html>
<html><head>
<title>
  Holiday   clips
</title>
<meta property="og:title" content="Not the title">
<meta property="og:image" content="https://cdn.example/og.jpg">
<meta property="og:image:width" content="1200"><meta property="og:image:height" content="630">
<meta property="og:video" content="https://www.youtube.com/embed/dQw4w9WgXcQ">
<meta property="og:video:width" content="1280"><meta property="og:video:height" content="720">
<meta name="twitter:image" content="/img/card.png">
<meta name="twitter:player:stream" content="media/stream.mp4">
<meta name="twitter:player" content="https://player.vimeo.com/video/76979871">
</head><body>
<video src="media/clip.mp4" poster="img/poster.jpg" width="640" height="360">
  <source src="media/clip.webm" type="video/webm">
  <source src="media/clip.mp4">
</video>
<img src="img/a.jpg" width="100px" height="50%" alt="a">
<img src="img/b.jpg" srcset="img/b-480.jpg 480w, https://images.example/w_800,h_600/b.jpg 800w, img/b-2x.jpg 2x">
<img data-src="img/lazy.jpg">
<img src="img/a.jpg#again" width="300" height="200">
<img src="data:image/png;base64,iVBORw0KGgo=">
<picture><source srcset="img/pic.avif 1024w" type="image/avif"><img src="img/pic.jpg"></picture>
<audio><source src="media/song.mp3"></audio>
<iframe src="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ?rel=0" width="560" height="315"></iframe>
<iframe src="//player.vimeo.com/video/12345?h=abc" width="500" height="281"></iframe>
<iframe src="https://ads.example/banner"></iframe>
<object data="https://www.youtube.com/v/abcdefghijk" width="425"><param name="movie" value="https://www.youtube.com/v/abcdefghijk"></object>
<a href="javascript:void(0)"><img src="javascript:alert(1)"></a>
</body></html>
"""


def expected(base: str) -> dict:
    def hit(url, kind, width=None, height=None):
        return {"url": url, "kind": kind, "width": width, "height": height}

    return {
        "videos": [
            hit("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtube", 1280, 720),
            hit(f"{base}/site/media/stream.mp4", "video"),
            hit("https://vimeo.com/76979871", "vimeo"),
            hit(f"{base}/site/media/clip.mp4", "video", 640, 360),
            hit(f"{base}/site/media/clip.webm", "video", 640, 360),
            hit("https://vimeo.com/12345", "vimeo", 500, 281),
            hit("https://www.youtube.com/watch?v=abcdefghijk", "youtube", 425),
        ],
        "images": [
            hit("https://cdn.example/og.jpg", "image", 1200, 630),
            hit(f"{base}/img/card.png", "image"),
            hit(f"{base}/site/img/poster.jpg", "image"),
            hit(f"{base}/site/img/a.jpg", "image", 100),
            hit(f"{base}/site/img/b.jpg", "image"),
            hit(f"{base}/site/img/b-480.jpg", "image", 480),
            hit("https://images.example/w_800,h_600/b.jpg", "image", 800),
            hit(f"{base}/site/img/b-2x.jpg", "image"),
            hit(f"{base}/site/img/lazy.jpg", "image"),
            hit(f"{base}/site/img/pic.avif", "image", 1024),
            hit(f"{base}/site/img/pic.jpg", "image"),
        ],
    }


def test_scrape_finds_every_kind_once_with_absolute_urls():
    title, hits = scrape(PAGE.encode(), "http://pages.example/site/index.html")
    assert title == "Holiday clips"
    assert hits == expected("http://pages.example")


def test_base_href_and_title_fallback():
    page = b'<head><base href="https://static.example/v2/"><meta property="og:title" content="OG"></head>' \
           b'<img src="x.png"><video><source src="../clip.mp4"></video>'
    title, hits = scrape(page, "http://pages.example/a/b.html")
    assert title == "OG"
    assert [h["url"] for h in hits["images"]] == ["https://static.example/v2/x.png"]
    assert [h["url"] for h in hits["videos"]] == ["https://static.example/clip.mp4"]
    assert scrape(b"<p>nothing</p>", "http://pages.example/") == (None, {"videos": [], "images": []})


def test_embedded_players():
    watch = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert embedded_player("https://youtu.be/dQw4w9WgXcQ?t=3") == ("youtube", watch)
    assert embedded_player("https://m.youtube.com/watch?v=dQw4w9WgXcQ&list=x")[0] == "youtube"
    assert embedded_player("https://vimeo.com/channels/staffpicks/76979871") == ("vimeo", "https://vimeo.com/76979871")
    assert embedded_player("https://www.youtube.com/channel/abc") is None
    assert embedded_player("https://example.com/embed/dQw4w9WgXcQ") is None


def test_scrape_task_on_a_local_page(service, media):
    site = media.directory / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text(PAGE)
    status = service.run({"task_name": "html.scrape", "url": f"{media.base}/site/index.html"})
    assert status["status"] == "success", status
    assert status["result"] == {"page_title": "Holiday clips", "hits": expected(media.base)}

    (site / "huge.html").write_bytes(b"<html>" + b" " * (get_settings().max_page_bytes + 1))
    huge = service.run({"task_name": "html.scrape", "url": f"{media.base}/site/huge.html"})
    assert huge["status"] == "error" and "too large" in huge["error"], huge

    port = media.base.rsplit(":", 1)[1]
    refused = service.run({"task_name": "html.scrape", "url": f"http://[::1]:{port}/site/index.html"})
    assert refused["status"] == "error" and "not in DRAGONFLOW_FETCH_ALLOW" in refused["error"], refused

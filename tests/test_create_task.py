"""video.create through the running service: v2 and v1 creates, the partial results of a
preview in a status stream, and the errors a client matches by name."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.test_api_surface import stream_lines


def definition(media, seconds: float = 2) -> str:
    red = media.image("create-red.jpg", size=(320, 180), color=(220, 20, 20))
    blue = media.image("create-blue.png", size=(180, 320), color=(20, 20, 220), fmt="PNG")
    return f"""<movie service="craftsman-1.0"><body>
  <effect type="none" duration="{seconds}"><image filename="{red}"/></effect>
  <transition type="crossfade" duration="1"/>
  <stack duration="{seconds}">
    <effect type="kenburns"><image filename="{blue}"/></effect>
    <text type="legend">Caption</text>
  </stack>
</body></movie>"""


def probe(url: str, tmp_path, name: str) -> dict:
    path = tmp_path / name
    path.write_bytes(httpx.get(url, timeout=30).content)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return json.loads(out)


def test_create_renders_export_and_thumbnail(service, media, tmp_path):
    status = service.run({"task_name": "video.create", "definition": definition(media), "profile": "240p"})
    assert status["status"] == "success", status
    result = status["result"]
    assert result["duration"] == pytest.approx(3.0)
    assert (result["width"], result["height"]) == (426, 240)
    assert result["preview"] is None
    info = probe(result["export"], tmp_path, "export.mp4")
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"], video["pix_fmt"], video["r_frame_rate"]) == (426, 240, "yuv420p", "25/1")
    assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.05)
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    thumbnail = httpx.get(result["thumbnail"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"


def test_preview_is_published_before_the_export(service, media):
    body = {"secret": service.account["secret"],
            "tasks": [{"task_name": "video.create", "definition": definition(media, 3), "preview": True,
                       "profile": "240p"}]}
    lines = stream_lines(service, "POST", "/v2/create_stream", json=body)
    updates = [line for line in lines[1:] if isinstance(line, dict)]
    final = updates[-1]
    assert final["status"] == "success", final
    assert set(final["result"]) >= {"duration", "preview", "export", "thumbnail"} and final["result"]["preview"]
    partial = [u["result"] for u in updates if u["status"] == "executing" and u.get("result")]
    assert {"duration": 5.0} in partial, updates
    with_preview = [p for p in partial if "preview" in p]
    assert with_preview and "export" not in with_preview[0], partial
    assert partial.index({"duration": 5.0}) < partial.index(with_preview[0])


def test_v1_create_makes_a_preview_by_default(service, media):
    response = service.http.post("/v1/create", json={
        "secret": service.account["secret"], "block": True,
        "tasks": {"task_name": "video.create", "definition": definition(media, 1.5), "profile": "quicktime-small"},
    })
    assert response.status_code == 200, response.text
    [status] = response.json()
    assert status["status"] == "success", status
    assert status["result"]["preview"] and status["result"]["export"]
    assert (status["result"]["width"], status["result"]["height"]) == (320, 240)


def test_errors_name_the_original_error_and_the_line(service, media):
    invalid = '<movie service="craftsman-1.0">\n<body>\n<image color="#ff0000"/>\n</body></movie>'
    missing = f"{media.base}/no-such-photo.jpg"
    broken = media.base + "/create-broken.jpg"
    (media.directory / "create-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    missing_def = f'<movie service="craftsman-1.0"><body><effect type="none"><image filename="{missing}"/></effect></body></movie>'
    broken_def = f'<movie service="craftsman-1.0"><body><effect type="none"><image filename="{broken}"/></effect></body></movie>'
    response = service.create([{"task_name": "video.create", "definition": d} for d in (invalid, missing_def, broken_def)],
                              block=True)
    assert response.status_code == 200, response.text
    bad, gone, undecodable = response.json()
    assert bad["status"] == "error" and bad["error"].startswith("InvalidContentError: line 3: <image>"), bad
    assert gone["status"] == "error" and gone["error"].startswith("CouldNotDownloadError:"), gone
    assert missing in gone["error"]
    assert undecodable["status"] == "error" and undecodable["error"].startswith("InvalidImageError:"), undecodable
    assert "create-broken.jpg" in undecodable["error"]

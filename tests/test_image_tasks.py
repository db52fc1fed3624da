"""The image tasks end to end: HTTP (or the CLI) -> Prefect -> warm worker -> storage ->
status; outputs are downloaded and their pixels inspected."""

from __future__ import annotations

import io
import json
import math

import httpx
import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageSequence

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def close(pixel, colour, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def download(url: str) -> Image.Image:
    response = httpx.get(url)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def serve(media, name: str, image: Image.Image, **options) -> str:
    image.save(media.directory / name, **options)
    return f"{media.base}/{name}"


def test_gif(service, media):
    urls = [media.image(f"g{i}.png", (80, 40), colour, "PNG") for i, colour in enumerate((RED, GREEN, BLUE))]

    status = service.run({"task_name": "image.gif", "images": urls, "loop": -1, "frame_duration": 0.234, "width": 40})

    assert status["status"] == "success", status
    result = status["result"]
    assert (result["width"], result["height"]) == (40, 20)
    gif = download(result["output"])
    assert result["output"].endswith(".gif") and gif.format == "GIF" and gif.size == (40, 20)
    frames = [(frame.convert("RGB").getpixel((20, 10)), frame.info["duration"]) for frame in ImageSequence.Iterator(gif)]
    assert [close(rgb, c) for (rgb, _), c in zip(frames, (RED, GREEN, BLUE))] == [True] * 3
    assert [duration for _, duration in frames] == [230] * 3
    assert "loop" not in gif.info  # -1: played once


def test_strip_through_the_cli(service, media):
    urls = [media.image(f"s{i}.png", (100, 100), colour, "PNG") for i, colour in enumerate((RED, GREEN, BLUE))]

    done = service.cli("run", "image.strip", f"urls={json.dumps(urls)}", "width=50", "height=25", "wrap=2", "format=png")

    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    result = status["result"]
    assert {k: result[k] for k in ("count", "width", "height", "content_type")} == {
        "count": 3, "width": 100, "height": 50, "content_type": "image/png"}
    strip = download(result["output"]).convert("RGB")
    assert strip.size == (100, 50)
    assert strip.getpixel((25, 12)) == RED and strip.getpixel((75, 12)) == GREEN and strip.getpixel((25, 37)) == BLUE
    assert strip.getpixel((5, 12)) == (0, 0, 0)  # fitted: black on either side of the square
    assert strip.getpixel((75, 37)) == (0, 0, 0)  # no fourth frame


def astronaut_on_texture(media) -> tuple[str, tuple[int, int, int, int]]:
    """A 1200×500 picture: noise on the left (the most entropy), the astronaut's head and
    shoulders on the right on flat grey; returns its URL and the face's box as measured by eye."""
    canvas = Image.new("RGB", (1200, 500), (128, 128, 128))
    canvas.paste(Image.effect_noise((400, 400), 90).convert("RGB"), (50, 50))
    canvas.paste(Image.fromarray(skimage.data.astronaut()).crop((120, 20, 320, 220)), (900, 150))
    return serve(media, "astronaut-texture.jpg", canvas, quality=92), (950, 190, 100, 105)


def test_face_saliency_and_smartcrop(service, media):
    url, face_box = astronaut_on_texture(media)

    faces = service.run({"task_name": "image.face", "url": url})
    assert faces["status"] == "success", faces
    assert (faces["result"]["width"], faces["result"]["height"]) == (1200, 500)
    [face] = faces["result"]["faces"]
    assert face["type"] == "frontal" and face["confidence"] > 0.95
    assert abs(face["x"] - face_box[0]) < 25 and abs(face["y"] - face_box[1]) < 25
    assert abs(face["width"] - face_box[2]) < 30 and abs(face["height"] - face_box[3]) < 30
    assert face["relative_x"] == round(face["x"] / 1200, 4) and face["relative_height"] == round(face["height"] / 500, 4)

    by_entropy = service.run({"task_name": "image.smartcrop", "url": url, "faces": False, "boxes_number": 3})
    with_faces = service.run({"task_name": "image.smartcrop", "url": url, "boxes_number": 3, "aspect_ratio": 1})
    focused = service.run({"task_name": "image.smartcrop", "url": url, "focal_point": [0.5, 0.5], "boxes_number": 1})
    for status in (by_entropy, with_faces, focused):
        assert status["status"] == "success", status
    first = by_entropy["result"]["points"][0]
    assert first["x"] + first["width"] <= 480 and len(by_entropy["result"]["points"]) == 3  # on the noise
    assert abs(first["width"] / first["height"] - 16 / 9) < 0.05
    first = with_faces["result"]["points"][0]
    assert first["x"] <= face["x"] and first["x"] + first["width"] >= face["x"] + face["width"]  # holds the face
    assert first["y"] <= face["y"] and first["y"] + first["height"] >= face["y"] + face["height"]
    assert abs(first["width"] - first["height"]) <= 2
    [centred] = focused["result"]["points"]
    assert abs(centred["x"] + centred["width"] / 2 - 600) < 40 and abs(centred["y"] + centred["height"] / 2 - 250) < 40

    img = Image.new("RGB", (900, 600), (120, 140, 160))
    ImageDraw.Draw(img).ellipse((160, 410, 240, 490), fill=RED)  # centre (200, 450)
    salient = service.run({"task_name": "image.saliency", "url": serve(media, "spot.png", img), "points_number": 3})
    assert salient["status"] == "success", salient
    points = salient["result"]["points"]
    assert 1 <= len(points) <= 3 and points[0]["weight"] == 1.0
    assert math.hypot(points[0]["x"] - 200, points[0]["y"] - 450) < 40
    assert points[0]["relative_y"] == round(points[0]["y"] / 600, 4)


def test_errors_name_the_url(service, media):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(data, "JPEG")
    (media.directory / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 3])
    (media.directory / "notes.png").write_text("not a picture")
    good = media.image("fine.png", (20, 20), RED, "PNG")
    cut, notes = f"{media.base}/cut.jpg", f"{media.base}/notes.png"

    thumb = service.run({"task_name": "image.thumb", "url": cut, "width": 50})
    gif = service.run({"task_name": "image.gif", "images": [good, notes]})
    face = service.run({"task_name": "image.face", "url": notes})

    assert thumb["status"] == gif["status"] == face["status"] == "error"
    assert thumb["error"].startswith(f"{cut}: not a readable image")
    assert gif["error"].startswith(f"{notes}: not a readable image")
    assert face["error"].startswith(f"{notes}: not a readable image")

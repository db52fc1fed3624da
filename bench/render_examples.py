"""Render every SXML example (``examples/sxml/*.xml``) into a small video and a contact sheet
for the docs (``docs/images/sxml-<stem>.png``).

The examples use placeholder asset URLs (``https://example.com/photo1.jpg`` … ``photo6.jpg``,
``clip1.mp4``, ``clip2.mp4``, ``music.mp3``, ``logo.png``, ``frame.png``). This script makes
those assets locally (Pillow pictures with distinct colours and a big number each, ffmpeg
``testsrc2`` clips with a ``sine`` tone, a sine melody as music, a logo and a frame PNG with
alpha), serves them from a local HTTP server on 127.0.0.1 (``deployments.local.serve_directory``),
substitutes the URLs in each definition and runs the flow's steps as plain functions, without
the service: ``parse`` → ``fetch assets`` (the real fetch step, 127.0.0.1 allowed) → ``probe``
→ ``plan`` → ``render_movie`` (the export render, 320×180 at 25 fps, antialias 2, x264
ultrafast). Each contact sheet shows 6 frames at fixed fractions of the duration (3×2 tiles
of 160×90, the time under each), titled with the file name, quantized to ≤ 128 colours.

Run: .venv/bin/python bench/render_examples.py [--keep DIR] [--only STEM,...] [--sheets DIR]. Not a test.
Prints per example: duration, render seconds, sheet path (or the error).
"""

from __future__ import annotations

import os

# before any flows import: steps as plain functions, loopback fetches allowed
os.environ["DRAGONFLOW_STEP_TASKS"] = "false"
os.environ["DRAGONFLOW_FETCH_ALLOW"] = "127.0.0.1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import colorsys  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.local import serve_directory  # noqa: E402
from flows import create as flow  # noqa: E402
from flows.create import render as renderer  # noqa: E402
from flows.create.profiles import Profile  # noqa: E402
from flows.create.text import default_font  # noqa: E402

PLACEHOLDER = "https://example.com"
PROFILE = Profile("docs-180p", 320, 180, Fraction(25))
ANTIALIAS = 2
TILE = (160, 90)
FRACTIONS = (0.04, 0.2, 0.38, 0.56, 0.74, 0.92)
MAX_SHEET_BYTES = 60 * 1024


def font(size: int) -> ImageFont.FreeTypeFont:
    bold = default_font().with_name("DejaVuSans-Bold.ttf")
    return ImageFont.truetype(str(bold if bold.exists() else default_font()), size)


# --------------------------------------------------------------------------- assets


def make_photo(path: Path, number: int) -> None:
    """A 1280×720 picture: a diagonal gradient of its own hue, a few shapes, a big number."""
    w, h = 1280, 720
    hue = (number - 1) / 6
    c1 = np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95)) * 255
    c2 = np.array(colorsys.hsv_to_rgb((hue + 0.12) % 1, 0.9, 0.35)) * 255
    y, x = np.mgrid[0:h, 0:w]
    t = ((x / w + y / h) / 2)[..., None]
    image = Image.fromarray((c1 * (1 - t) + c2 * t).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for i in range(5):  # shapes show Ken Burns motion and crops
        cx, cy = 120 + i * 260, 110 + (i % 2) * 500
        draw.ellipse((cx - 50, cy - 50, cx + 50, cy + 50), fill=(255, 255, 255), outline=(0, 0, 0), width=6)
    draw.rectangle((8, 8, w - 9, h - 9), outline=(255, 255, 255), width=10)
    big = font(420)
    text = str(number)
    box = draw.textbbox((0, 0), text, font=big)
    pos = ((w - (box[2] - box[0])) / 2 - box[0], (h - (box[3] - box[1])) / 2 - box[1])
    draw.text(pos, text, font=big, fill=(255, 255, 255), stroke_width=14, stroke_fill=(0, 0, 0))
    draw.text((40, h - 90), f"photo{number}", font=font(56), fill=(255, 255, 255), stroke_width=4,
              stroke_fill=(0, 0, 0))
    image.save(path, quality=90)


def make_logo(path: Path) -> None:
    """A 400×200 RGBA logo: a yellow rounded badge with "LOGO", transparent around it."""
    image = Image.new("RGBA", (400, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((10, 10, 390, 190), radius=60, fill=(255, 210, 0, 230), outline=(0, 0, 0, 255), width=8)
    draw.text((200, 100), "LOGO", font=font(110), fill=(20, 20, 20, 255), anchor="mm")
    image.save(path)


def make_frame(path: Path) -> None:
    """A 1280×720 RGBA picture frame: a thick magenta/white border, a transparent middle."""
    image = Image.new("RGBA", (1280, 720), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1279, 719), outline=(230, 0, 200, 255), width=60)
    draw.rectangle((60, 60, 1219, 659), outline=(255, 255, 255, 255), width=12)
    draw.text((640, 30), "FRAME", font=font(44), fill=(255, 255, 255, 255), anchor="mm")
    image.save(path)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_assets(directory: Path) -> None:
    for n in range(1, 7):
        make_photo(directory / f"photo{n}.jpg", n)
    make_logo(directory / "logo.png")
    make_frame(directory / "frame.png")
    for name, video, tone in (("clip1.mp4", "testsrc2=s=640x360:r=25:d=8", "sine=f=330:d=8"),
                              ("clip2.mp4", "testsrc2=s=640x360:r=25:d=8,hue=h=150,negate", "sine=f=550:d=8")):
        ffmpeg("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", tone, "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(directory / name))
    # music: 40 s of a four-note arpeggio (beeps), so it is audibly "music", not a test tone
    notes = [262, 330, 392, 523]
    expr = "+".join(f"0.25*sin(2*PI*{f}*t)*eq(mod(floor(t*2),4),{i})" for i, f in enumerate(notes))
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:d=40", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "96k",
           str(directory / "music.mp3"))


# --------------------------------------------------------------------------- render


async def render_example(xml: str, base_url: str, work: Path, out: Path) -> float:
    """The flow's steps on one definition; the movie's duration."""
    text = xml.replace(PLACEHOLDER, base_url)
    definition = await flow.parse_definition.fn(text)
    files = await flow.fetch_assets.fn(definition, work / "assets")
    probes, speech_files, lengths = await flow.probe_assets.fn(definition, files, work / "speech")
    plan = await flow.plan_movie.fn(definition, lengths, PROFILE)
    fonts = {url: path for url, path in files.items() if flow._is_font(definition, url)}
    media = renderer.Media(files={**files, **speech_files}, probes=probes, fonts=fonts)
    await renderer.render_movie(plan, media, PROFILE, out, work / "render", antialias=ANTIALIAS,
                                preset="ultrafast", crf=23)
    return plan.duration


def frame_at(movie: Path, seconds: float) -> Image.Image:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(movie), "-frames:v", "1",
                          "-s", f"{TILE[0]}x{TILE[1]}", "-f", "image2pipe", "-vcodec", "png", "-"],
                         capture_output=True, check=True).stdout
    if not raw:
        return Image.new("RGB", TILE, (60, 60, 60))
    return Image.open(io.BytesIO(raw)).convert("RGB")


def contact_sheet(movie: Path, duration: float, title: str, dest: Path) -> int:
    pad, head, label = 6, 26, 18
    w = 3 * TILE[0] + 4 * pad
    h = head + 2 * (TILE[1] + label) + 3 * pad
    sheet = Image.new("RGB", (w, h), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 5), title, font=font(15), fill=(255, 255, 255))
    draw.text((w - pad, 7), f"{duration:.2f} s", font=font(13), fill=(190, 190, 190), anchor="ra")
    small = font(12)
    for i, fraction in enumerate(FRACTIONS):
        t = duration * fraction
        x = pad + (i % 3) * (TILE[0] + pad)
        y = head + (i // 3) * (TILE[1] + label + pad)
        sheet.paste(frame_at(movie, t), (x, y))
        draw.text((x + TILE[0] // 2, y + TILE[1] + 2), f"{t:.2f} s", font=small, fill=(220, 220, 220), anchor="ma")
    for colours in (128, 96, 64, 48, 32):
        sheet.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dest, optimize=True)
        if dest.stat().st_size <= MAX_SHEET_BYTES:
            break
    return dest.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the rendered videos in this directory")
    parser.add_argument("--only", help="comma list of example stems (or prefixes) to render")
    parser.add_argument("--sheets", type=Path, default=ROOT / "docs" / "images",
                        help="where the contact sheets go (default: docs/images)")
    args = parser.parse_args()
    examples = sorted((ROOT / "examples" / "sxml").glob("*.xml"))
    if args.only:
        wanted = args.only.split(",")
        examples = [e for e in examples if any(e.stem.startswith(w) for w in wanted)]
    images = args.sheets.resolve()
    images.mkdir(parents=True, exist_ok=True)
    failures = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sxml-examples-") as tmp:
        tmp = Path(tmp)
        assets = tmp / "assets"
        assets.mkdir()
        started = time.perf_counter()
        make_assets(assets)
        print(f"assets made in {time.perf_counter() - started:.1f} s")
        videos = args.keep or tmp / "videos"
        videos.mkdir(parents=True, exist_ok=True)
        with serve_directory(assets) as base_url:
            for example in examples:
                movie = videos / f"{example.stem}.mp4"
                started = time.perf_counter()
                try:
                    duration = asyncio.run(render_example(example.read_text(), base_url, tmp / example.stem, movie))
                except Exception as exc:  # noqa: BLE001 - report and go on
                    failures.append((example.name, exc))
                    print(f"{example.name:32s} FAILED after {time.perf_counter() - started:.1f} s:"
                          f" {type(exc).__name__}: {exc}")
                    traceback.print_exc(limit=3, file=sys.stderr)
                    continue
                seconds = time.perf_counter() - started
                sheet = images / f"sxml-{example.stem}.png"
                size = contact_sheet(movie, duration, example.name, sheet)
                print(f"{example.name:32s} duration {duration:6.2f} s  render {seconds:5.1f} s"
                      f"  sheet {sheet} ({size // 1024} KB)")
    print(f"{len(examples) - len(failures)}/{len(examples)} rendered in {time.perf_counter() - total:.1f} s")
    for name, exc in failures:
        print(f"  failed: {name}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Make the pictures of docs/images/ (embedded in the README and docs/tasks-image.md) by
running the image steps on photographs shipped with scikit-image (public domain / CC0).

Run: .venv/bin/python bench/make_doc_images.py   (needs scikit-image; writes docs/images/*.png)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import skimage.data
from PIL import Image, ImageDraw, ImageFont, ImageSequence

from flows.steps.image.analysis import load_for_analysis
from flows.steps.image.faces import detect_faces
from flows.steps.image.gif import make_gif
from flows.steps.image.imaging import make_thumbnail
from flows.steps.image.smartcrop import smart_boxes
from flows.steps.image.strip import make_strip

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
MAX_BYTES = 60_000
FONT = ImageFont.load_default(size=13)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def labelled(images: list[tuple[Image.Image, str]], gap: int = 12) -> Image.Image:
    """The images side by side on white, each with its caption underneath."""
    width = sum(img.width for img, _ in images) + gap * (len(images) + 1)
    height = max(img.height for img, _ in images) + 2 * gap + 18
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = gap
    for img, caption in images:
        sheet.paste(img.convert("RGB"), (x, gap))
        draw.text((x, gap + img.height + 4), caption, fill=(60, 60, 60), font=FONT)
        x += img.width + gap
    return sheet


def save(img: Image.Image, name: str) -> None:
    """Save as a palette PNG, with fewer colours until it is under MAX_BYTES."""
    path = OUT / name
    for colours in (256, 128, 64, 32):
        img.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size < MAX_BYTES:
            break
    print(f"{path.relative_to(OUT.parent.parent)}: {img.width}×{img.height}, {path.stat().st_size // 1024} KiB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = {}
        for name in PHOTOS:
            photos[name] = tmp / f"{name}.jpg"
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(photos[name], quality=92)

        def thumb(**options) -> Image.Image:
            path, _ = make_thumbnail(photos["coffee"], tmp / "thumb", format="png", **options)
            with Image.open(path) as img:
                return img.copy()  # the next thumbnail overwrites the file

        save(labelled([
            (thumb(width=180, height=180), "width=180 height=180"),
            (thumb(width=180, height=180, crop=True), "crop=true"),
            (thumb(width=180, height=120, crop=True, poster=True), "poster=true"),
            (thumb(width=120, height=180, crop=True, rotation=90), "rotation=90"),
        ]), "image-thumb.png")

        sources = [(name, path) for name, path in photos.items()]
        path, _ = make_strip(sources, tmp / "strip", width=160, height=90, crop=True, wrap=2, format="png")
        save(Image.open(path), "image-strip.png")

        path, _ = make_gif(sources, tmp / "gif", width=128, height=128, frame_duration=0.5)
        with Image.open(path) as gif:
            frames = [(frame.convert("RGB"), f"frame {i + 1}: {frame.info['duration'] / 1000:g} s")
                      for i, frame in enumerate(ImageSequence.Iterator(gif))]
        save(labelled(frames), "image-gif.png")

        analysed = load_for_analysis(photos["astronaut"])
        faces = detect_faces(analysed.image)
        boxes = smart_boxes(analysed.image, aspect_ratio=16 / 9, boxes_number=3, step_ratio=0.03,
                            diag_ratio=0.4, faces=faces)
        picture = analysed.image.copy()
        draw = ImageDraw.Draw(picture)
        for face in faces:
            draw.rectangle((face.x, face.y, face.x + face.width, face.y + face.height), outline="white", width=3)
        label = ImageFont.load_default(size=22)
        for rank, b in enumerate(boxes, 1):
            colour = [(0, 200, 255), (255, 60, 200), (120, 255, 120)][rank - 1]
            draw.rectangle((b.x, b.y, b.x + b.width, b.y + b.height), outline=colour, width=5)
            text = f"#{rank} score {b.score:.2f}"
            draw.rectangle(draw.textbbox((b.x + 8, b.y + 6), text, font=label), fill=(0, 0, 0))
            draw.text((b.x + 8, b.y + 6), text, fill=colour, font=label)
        picture.thumbnail((400, 400))
        caption = "boxes_number=3, 16:9, diag_ratio=0.4; face in white"
        save(labelled([(picture, caption)]), "image-smartcrop.png")


if __name__ == "__main__":
    main()

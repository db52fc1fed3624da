"""Face detection (``image.face``) measured on real photographs shipped inside scikit-image:
precision and recall of the task's detector (MTCNN) next to OpenCV's Haar cascade.

Positives: ``astronaut`` (1 face), ``camera`` (1 face, turned away) and 100 real faces of the
Labeled Faces in the Wild subset (``lfw_subset``, 25×25 grey crops) laid out as a group
picture at 40 and 80 pixels a face. Negatives: 20 real photographs and scans without a human
face (cat, coffee, rocket, textures, cells, text...) and the 100 non-face LFW patches.
Every image goes through the task's own path: saved as JPEG, decoded upright at analysis
size, then detected. A detection is a hit when it overlaps an unmatched true face with an
IoU of at least 0.3 (detectors frame a face differently); anything else is a false positive.

Run: .venv/bin/python bench/image_face.py   (needs scikit-image; not a test)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

from flows.steps.image.analysis import load_for_analysis
from flows.steps.image.faces import MIN_CONFIDENCE, detect_faces

DATA = Path(skimage.data.__file__).parent
NEGATIVES = [
    "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "brick.png", "grass.png",
    "gravel.png", "horse.png", "motorcycle_left.png", "retina.jpg", "moon.png", "page.png",
    "text.png", "coins.png", "ihc.png", "cell.png", "color.png", "logo.png", "clock_motion.png",
    "microaneurysms.png",
]
Box = tuple[float, float, float, float]


def group_picture(patches: np.ndarray, side: int, cell: int) -> tuple[Image.Image, list[Box]]:
    """The 25×25 patches scaled to ``side`` on a grey ground, 10 to a row, with their boxes."""
    rows = -(-len(patches) // 10)
    canvas = Image.new("RGB", (10 * cell, rows * cell), (128, 128, 128))
    boxes = []
    for i, patch in enumerate(patches):
        tile = Image.fromarray((patch * 255).astype(np.uint8)).resize((side, side), Image.Resampling.LANCZOS)
        x, y = (i % 10) * cell + (cell - side) // 2, (i // 10) * cell + (cell - side) // 2
        canvas.paste(tile.convert("RGB"), (x, y))
        boxes.append((x, y, side, side))
    return canvas, boxes


def dataset() -> tuple[dict[str, tuple[Image.Image, list[Box]]], dict[str, Image.Image]]:
    lfw = np.load(DATA / "lfw_subset.npy")
    positives = {
        "astronaut": (Image.open(DATA / "astronaut.png"), [(170, 60, 100, 105)]),
        "camera": (Image.open(DATA / "camera.png"), [(190, 85, 70, 90)]),
        "lfw faces, 40 px": group_picture(lfw[:100], 40, 80),
        "lfw faces, 80 px": group_picture(lfw[:100], 80, 140),
    }
    negatives = {name: Image.open(DATA / name) for name in NEGATIVES}
    negatives["lfw non-faces, 80 px"] = group_picture(lfw[100:], 80, 140)[0]
    return positives, negatives


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def mtcnn(threshold: float):
    def detect(path: Path) -> list[Box]:
        analysed = load_for_analysis(path)
        return [tuple(analysed.region(f.x, f.y, f.width, f.height)[k] for k in ("x", "y", "width", "height"))
                for f in detect_faces(analysed.image, min_confidence=threshold)]
    return detect


def haar(path: Path) -> list[Box]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    grey = cv2.equalizeHist(np.asarray(Image.open(path).convert("L")))
    return [tuple(map(float, box)) for box in cascade.detectMultiScale(grey, 1.1, 5, minSize=(20, 20))]


def evaluate(detect, positives: dict, negatives: dict) -> dict:
    hits = misses = false = 0
    per_set, seconds = {}, []
    for name, (path, truth) in positives.items():
        start = time.perf_counter()
        found = detect(path)
        seconds.append(time.perf_counter() - start)
        matched: set[int] = set()
        for box in found:
            best = max(((iou(box, t), i) for i, t in enumerate(truth) if i not in matched), default=(0, -1))
            if best[0] >= 0.3:
                matched.add(best[1])
            else:
                false += 1
        hits += len(matched)
        misses += len(truth) - len(matched)
        per_set[name] = f"{len(matched)}/{len(truth)}"
    false_on_negatives = 0
    for path in negatives.values():
        start = time.perf_counter()
        false_on_negatives += len(detect(path))
        seconds.append(time.perf_counter() - start)
    false += false_on_negatives
    return {
        "recall": hits / (hits + misses),
        "precision": hits / max(1, hits + false),
        "false positives on negatives": false_on_negatives,
        "median s/image": statistics.median(seconds),
        "per set": per_set,
    }


def main() -> None:
    positives, negatives = dataset()
    with tempfile.TemporaryDirectory() as tmp:
        def saved(name: str, image: Image.Image) -> Path:
            path = Path(tmp) / (name.replace(" ", "_").replace(",", "") + ".jpg")
            image.convert("RGB").save(path, quality=90)
            return path

        positives = {name: (saved(name, image), truth) for name, (image, truth) in positives.items()}
        negatives = {name: saved(name, image) for name, image in negatives.items()}
        faces = sum(len(truth) for _, truth in positives.values())
        print(f"{faces} faces in {len(positives)} pictures; {len(negatives)} pictures without a face")
        detectors = {f"mtcnn >= {t}" + (" (the task)" if t == MIN_CONFIDENCE else ""): mtcnn(t)
                     for t in (0.8, MIN_CONFIDENCE, 0.95, 0.98)}
        detectors["opencv haar (baseline)"] = haar
        for name, detect in detectors.items():
            r = evaluate(detect, positives, negatives)
            print(f"{name:24s} precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
                  f"false positives on negatives {r['false positives on negatives']}  "
                  f"median {r['median s/image'] * 1000:.0f} ms/image  {r['per set']}")


if __name__ == "__main__":
    main()

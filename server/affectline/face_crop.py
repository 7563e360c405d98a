"""Turn an image file into the expression model's grayscale face crop.

Pipeline: Pillow load (EXIF orientation applied) -> grayscale with BT.601 weights (Pillow's "L"
mode: L = 0.299 R + 0.587 G + 0.114 B, the same luma FER2013's images have) -> either

* the whole image, when it already is a tight face crop: both sides <= TIGHT_CROP_MAX_SIDE px and
  aspect ratio (long/short) <= TIGHT_CROP_MAX_ASPECT. FER2013 images are 48x48 face crops; a
  photo with a face somewhere in it is practically never this small; or
* OpenCV's Haar frontal-face cascade on the image (downscaled to DETECT_MAX_SIDE for speed), the
  largest face, a square of side (1 + FACE_MARGIN) * box side around the box centre, taken from
  the full-resolution image (edges replicated where the square leaves the image). If no face is
  found the result says so (face_found False, crop None): we never guess a region.

Resizing to the model size uses INTER_AREA when shrinking and INTER_LINEAR when enlarging
(the `fer` package resizes with cv2's default INTER_LINEAR; for FER2013's 48->64 upscaling the
two are within 0.1 accuracy point of each other: PrivateTest 65.51 % LINEAR, 65.56 % AREA).

FACE_MARGIN was measured, not guessed: on 1,500 FER2013 PrivateTest faces upscaled 4x onto a flat
canvas, the cascade's box covered a median 46.75/48 of the FER2013 frame, centred, i.e. FER2013
framing ~= the Haar box grown by ~3 %. Accuracy on those 1,132 detections was 65.2-65.9 % for
margins in [-0.05, 0.05] (66.5 % when the same faces are fed uncropped) and fell with wider
framing (+0.1: 63.8 %, +0.2: 60.6 %, +0.3: 58.9 %).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageOps

TIGHT_CROP_MAX_SIDE = 128
TIGHT_CROP_MAX_ASPECT = 1.25
FACE_MARGIN = 0.03
DETECT_MAX_SIDE = 1024
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # x, y, w, h in source-image pixels

_local = threading.local()  # CascadeClassifier is not safe to share between threads


def _cascade() -> cv2.CascadeClassifier:
    c = getattr(_local, "cascade", None)
    if c is None:
        path = Path(cv2.data.haarcascades) / HAAR_CASCADE  # type: ignore[attr-defined]  # missing from stubs
        c = cv2.CascadeClassifier(str(path))
        if c.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}")
        _local.cascade = c
    return c


@dataclass(frozen=True, eq=False)
class FaceCrop:
    crop: np.ndarray | None  # uint8 [height, width] at the requested size; None when no face
    face_found: bool
    method: Literal["whole_image", "haar", "none"]
    box: Box | None  # the cropped square in the source image (may extend past its edges)
    image_size: tuple[int, int]  # source (width, height)


def load_gray(path: Path) -> np.ndarray:
    """Image file -> uint8 [H, W] BT.601 grayscale. Raises OSError/ValueError if unreadable."""
    with Image.open(path) as src:
        im = ImageOps.exif_transpose(src)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # high-bit-depth grayscale: scale to 8 bits instead of letting "L" clip
            a = np.asarray(im, dtype=np.float64)
            hi = a.max() if a.size and a.max() > 0 else 1.0
            return np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def resize(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 gray to size=(width, height): INTER_AREA shrinking, INTER_LINEAR enlarging."""
    w, h = size
    if gray.shape == (h, w):
        return gray
    shrinking = gray.shape[0] * gray.shape[1] > w * h
    return cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def is_tight_crop(width: int, height: int) -> bool:
    return (max(width, height) <= TIGHT_CROP_MAX_SIDE
            and max(width, height) <= TIGHT_CROP_MAX_ASPECT * min(width, height))


def detect_largest_face(gray: np.ndarray) -> Box | None:
    """Largest Haar face as (x, y, w, h) in `gray` pixel coordinates, or None."""
    h, w = gray.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = gray if scale == 1.0 else cv2.resize(gray, (round(w * scale), round(h * scale)),
                                                 interpolation=cv2.INTER_AREA)
    faces = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, fw, fh = max(faces, key=lambda b: int(b[2]) * int(b[3]))
    return (round(x / scale), round(y / scale), round(fw / scale), round(fh / scale))


def square_crop(gray: np.ndarray, box: Box, margin: float) -> tuple[np.ndarray, Box]:
    """Square of side (1+margin)*max(w,h) centred on box; edges replicated outside the image."""
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1.0 + margin)))
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    x1, y1 = x0 + side, y0 + side
    H, W = gray.shape
    inner = gray[max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)]
    crop = cv2.copyMakeBorder(inner, max(-y0, 0), max(y1 - H, 0), max(-x0, 0), max(x1 - W, 0),
                              cv2.BORDER_REPLICATE)
    return crop, (x0, y0, side, side)


def crop_face(gray: np.ndarray, size: tuple[int, int], *, margin: float = FACE_MARGIN) -> FaceCrop:
    """uint8 [H, W] gray image -> FaceCrop at size=(width, height)."""
    h, w = gray.shape
    if is_tight_crop(w, h):
        return FaceCrop(resize(gray, size), True, "whole_image", (0, 0, w, h), (w, h))
    box = detect_largest_face(gray)
    if box is None:
        return FaceCrop(None, False, "none", None, (w, h))
    crop, square = square_crop(gray, box, margin)
    return FaceCrop(resize(crop, size), True, "haar", square, (w, h))


def crop_image_file(path: Path, size: tuple[int, int], *, margin: float = FACE_MARGIN) -> FaceCrop:
    return crop_face(load_gray(path), size, margin=margin)

"""Turn an image file into the expression model's grayscale face crop, as the browser crops.

Pipeline: Pillow load (EXIF orientation applied) -> either

* the whole image, when it already is a tight face crop: both sides <= TIGHT_CROP_MAX_SIDE px and
  aspect ratio (long/short) <= TIGHT_CROP_MAX_ASPECT. FER2013 images are 48x48 face crops; a
  photo with a face somewhere in it is practically never this small. Gray is BT.601 luma
  (Pillow's "L", the luma FER2013's images have), resized INTER_AREA shrinking and
  INTER_LINEAR enlarging; or
* the viewer page's own path: BlazeFace finds the largest face and its eyes
  (recording/blazeface.py), and recording/align.py cuts the eye-aligned gray crop with the
  browser's geometry and resampling. If no face is found the result says so (face_found
  False, crop None): a region is never guessed.

Why no Haar box any more: on 300 FER2013 PrivateTest faces upscaled to 192x192 and padded into
640x480 frames, BlazeFace found 296 faces and OpenCV's Haar cascade 214, at equal accuracy on
the 212 both found (73.6 %), and the aligned path took 13-15 ms per image against 100-125 ms.
On 48x48 images the whole image beats detecting and aligning (74.7 % vs 56.7 %), hence the
tight-crop rule (docs/recordings.md, "classify").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
from PIL import Image, ImageOps

from affectline.recording.align import aligned_crop_rgb

TIGHT_CROP_MAX_SIDE = 128
TIGHT_CROP_MAX_ASPECT = 1.25

Box = tuple[int, int, int, int]  # x, y, w, h in source-image pixels


class Detector(Protocol):
    """recording.blazeface.BlazeFace as this module uses it."""

    def detect_rgb(self, rgb: np.ndarray): ...  # -> Face | None (eye_l, eye_r, box)


@functools.cache
def default_detector() -> Detector:
    from affectline.recording.blazeface import BlazeFace

    return BlazeFace(threads=1)  # thread-safe; loaded once per process


@dataclass(frozen=True, eq=False)
class FaceCrop:
    crop: np.ndarray | None  # uint8 [height, width] at the requested size; None when no face
    face_found: bool
    method: Literal["whole_image", "aligned", "none"]
    box: Box | None  # the detector's face box (or the whole image) in source pixels
    image_size: tuple[int, int]  # source (width, height)


def load_rgb(path: Path) -> np.ndarray:
    """Image file -> uint8 [H, W, 3] RGB. Raises OSError/ValueError if unreadable."""
    with Image.open(path) as src:
        im = ImageOps.exif_transpose(src)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            # high-bit-depth grayscale: scale to 8 bits instead of letting "L" clip
            a = np.asarray(im, dtype=np.float64)
            hi = a.max() if a.size and a.max() > 0 else 1.0
            gray = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def gray_bt601(rgb: np.ndarray) -> np.ndarray:
    """Pillow's "L" conversion (what FER2013's gray is): L = (R*299 + G*587 + B*114) / 1000."""
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8)


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


def crop_face(rgb: np.ndarray, size: tuple[int, int], *, detector: Detector | None = None) -> FaceCrop:
    """uint8 [H, W, 3] RGB image -> FaceCrop at size=(width, height) (square for the aligned path)."""
    h, w = rgb.shape[:2]
    if is_tight_crop(w, h):
        return FaceCrop(resize(gray_bt601(rgb), size), True, "whole_image", (0, 0, w, h), (w, h))
    if size[0] != size[1]:
        raise ValueError(f"the aligned crop is square; got size {size}")
    face = (detector or default_detector()).detect_rgb(rgb)
    if face is None:
        return FaceCrop(None, False, "none", None, (w, h))
    x, y, bw, bh = (round(v) for v in face.box)
    return FaceCrop(aligned_crop_rgb(rgb, face.eye_l, face.eye_r, size[0]), True, "aligned", (x, y, bw, bh), (w, h))


def crop_image_file(path: Path, size: tuple[int, int], *, detector: Detector | None = None) -> FaceCrop:
    return crop_face(load_rgb(path), size, detector=detector)

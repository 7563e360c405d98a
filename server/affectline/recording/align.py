"""The browser's eye-aligned gray face crop (client_js/src/face.ts, Cropper.crop), in Python.

Geometry, exactly face.ts': the eyes land at EYE_L = (0.30, 0.38) and EYE_R = (0.68, 0.38) of
the square crop (docs/model-card.md "Crop geometry"); the canvas transform is

    crop = T(eye-mid target) . S(scale) . R(-angle) . T(-eye midpoint)

with angle = atan2(ry - ly, rx - lx) and scale = (0.68 - 0.30) * size / |eyeR - eyeL|, drawn
over a #808080 fill (what lies outside the frame stays mid-gray). Pixel centres sit at +0.5 on
both sides (canvas and image), which is what the matrix below accounts for.

Resampling: Chromium (156, software canvas) draws a shrinking drawImage with
imageSmoothingQuality "high" bilinearly from ONE mipmap level, floor(log2(1/scale)) (2x2
box-filtered halvings), with no blend between levels; this module does the same with OpenCV
(INTER_AREA halvings, warpAffine INTER_LINEAR). When the crop enlarges it samples the frame
bilinearly. Gray is BT.601 luma of the RGB result, rounded half up like face.ts'
Math.round(0.299 R + 0.587 G + 0.114 B).

Measured against Chromium's own Cropper.crop on the same PNG frames and eye positions
(tests/test_recording_browser.py): see docs/recordings.md for the tolerance.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

EYE_L = (0.30, 0.38)
EYE_R = (0.68, 0.38)
FILL = 128  # "#808080"


def crop_matrix(eye_l: tuple[float, float], eye_r: tuple[float, float], size: int) -> np.ndarray:
    """2x3 affine from image pixel indices to crop pixel indices (face.ts' canvas transform)."""
    lx, ly = eye_l
    rx, ry = eye_r
    angle = math.atan2(ry - ly, rx - lx)
    scale = (EYE_R[0] - EYE_L[0]) * size / (math.hypot(rx - lx, ry - ly) or 1.0)
    c, s = math.cos(-angle) * scale, math.sin(-angle) * scale
    lin = np.array([[c, -s], [s, c]])
    mid = np.array([(lx + rx) / 2, (ly + ry) / 2])
    target = np.array([(EYE_L[0] + EYE_R[0]) / 2 * size, EYE_L[1] * size])
    t = target - lin @ mid  # continuous coordinates (pixel i covers [i, i+1))
    t = t + lin @ np.array([0.5, 0.5]) - 0.5  # -> pixel-index coordinates on both sides
    return np.hstack([lin, t[:, None]])


def _warp(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    border = (FILL,) * (img.shape[2] if img.ndim == 3 else 1)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def warp_like_chromium(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """warpAffine sampled the way Chromium's canvas samples a shrinking drawImage: bilinear from
    the mipmap level floor(log2(1/scale)) (2x2 box-filtered halvings; no blend between levels).
    Measured against Chromium 156: level floor(lod) matches to <= 2 grey levels, round(lod) and
    trilinear blends do not (docs/recordings.md). Float32 result, channels as given."""
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    level = int(math.floor(math.log2(1.0 / scale) + 1e-9)) if scale < 1.0 else 0
    if level == 0:
        return _warp(img, m, size).astype(np.float32)
    # Only the part of the frame the crop reads is downsampled: its bounding box, grown to even
    # coordinates at every level so the halvings line up with the whole frame's mipmaps.
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[-1, -1, 1], [size + 1, -1, 1], [-1, size + 1, 1], [size + 1, size + 1, 1]], float) @ inv.T
    h, w = img.shape[:2]
    step = 1 << level
    x0 = max(0, int(math.floor(corners[:, 0].min())) // step * step - step)
    y0 = max(0, int(math.floor(corners[:, 1].min())) // step * step - step)
    x1 = min(w, int(math.ceil(corners[:, 0].max())) + 2 * step)
    y1 = min(h, int(math.ceil(corners[:, 1].max())) + 2 * step)
    if x1 - x0 < step or y1 - y0 < step:  # the crop lies outside the frame: all fill
        return np.full((size, size) + img.shape[2:], float(FILL), np.float32)
    lv = img[y0:y1, x0:x1]
    for _ in range(level):
        lh, lw = lv.shape[:2]
        if lw < 2 or lh < 2:
            break
        # an exact 2x2 box filter needs even sides (an odd side makes INTER_AREA blend 3 pixels)
        lv = cv2.resize(lv[: lh // 2 * 2, : lw // 2 * 2], (lw // 2, lh // 2), interpolation=cv2.INTER_AREA)
    # from level-image indices q to base indices p: p + 0.5 = (q + 0.5) * step + (x0, y0)
    ls = 1.0 / step
    a = m[:, :2] / ls
    t = m[:, 2] + m[:, :2] @ np.array([x0 + 0.5 * step - 0.5, y0 + 0.5 * step - 0.5])
    return _warp(lv, np.hstack([a, t[:, None]]), size).astype(np.float32)


def gray_bt601(rgb: np.ndarray) -> np.ndarray:
    """face.ts: Math.round(0.299 R + 0.587 G + 0.114 B) per pixel (float or uint8 RGB in)."""
    rgb = np.clip(np.floor(rgb.astype(np.float32) + 0.5), 0, 255)  # the canvas holds 8-bit RGBA
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.floor(y + 0.5).astype(np.uint8)


def aligned_crop_rgb(rgb: np.ndarray, eye_l: tuple[float, float], eye_r: tuple[float, float], size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] frame -> uint8 [size, size] gray crop, face.ts' Cropper.crop."""
    return gray_bt601(warp_like_chromium(rgb, crop_matrix(eye_l, eye_r, size), size))


def aligned_crop_bgr(bgr: np.ndarray, eye_l: tuple[float, float], eye_r: tuple[float, float], size: int) -> np.ndarray:
    return gray_bt601(warp_like_chromium(bgr, crop_matrix(eye_l, eye_r, size), size)[..., ::-1])


def aligned_crop_gray(gray: np.ndarray, eye_l: tuple[float, float], eye_r: tuple[float, float], size: int) -> np.ndarray:
    """For a gray source (R = G = B): the same crop without the colour channels."""
    g = warp_like_chromium(gray, crop_matrix(eye_l, eye_r, size), size)
    return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)

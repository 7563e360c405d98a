"""Frames of the campaign video at given video times, as small JPEGs (OpenCV's FFmpeg decoder)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
from cv2.utils import logging as cv_logging

WIDTH_PX = 192
JPEG_QUALITY = 80


def frames_at(path: Path | None, seconds: Iterable[float], width: int = WIDTH_PX) -> dict[float, bytes]:
    """{time: JPEG} for each time the file has a frame at; {} when the file is missing or unreadable
    (the report then says so instead of showing thumbnails)."""
    if path is None or not path.is_file():
        return {}
    level = cv_logging.getLogLevel()
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)  # FFmpeg's note on WebM's VP80 tag is no news
    try:
        capture = cv2.VideoCapture(str(path))
    finally:
        cv_logging.setLogLevel(level)
    out: dict[float, bytes] = {}
    try:
        if not capture.isOpened():
            return {}
        for t in sorted(set(seconds)):
            capture.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
            ok, frame = capture.read()
            if not ok or frame is None:
                continue
            h, w = frame.shape[:2]
            if w > width:
                frame = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                out[t] = jpeg.tobytes()
    finally:
        capture.release()
    return out

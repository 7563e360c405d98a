"""A short webcam recording made from real face photos (npm @vladmandic/face-api demo, MIT): the
smiling middle face of sample3.jpg for 1 s, then a face-free part of the same photo for 1 s."""

from __future__ import annotations

from pathlib import Path

import cv2
from browser_support import SAMPLES, face_frame

FPS = 30


def sofa_frame():
    """640x480, no face in it."""
    return cv2.resize(cv2.imread(str(SAMPLES / "sample3.jpg"))[900:1300, 0:533], (640, 480))


def write_mp4(path: Path, frames) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 480))
    for frame in frames:
        w.write(frame)
    w.release()
    return path


def write_webcam_mp4(path: Path) -> Path:
    """2 s, 640x480, 30 fps mp4: frames 0-29 a smiling face, 30-59 no face."""
    smiling = face_frame(SAMPLES / "sample3.jpg", (1015, 209, 315, 315))
    return write_mp4(path, [smiling] * FPS + [sofa_frame()] * FPS)

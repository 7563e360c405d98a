"""The video catalogue: registering playable files, and the demo video made on first start."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

import cv2
import numpy as np

from affectline.storage.timeline_store import TimelineStore

log = logging.getLogger("affectline.videos")

DEMO_ID = "demo"
# Container types Chromium plays without proprietary codecs (Debian's build).
MIME_BY_SUFFIX = {".webm": "video/webm", ".mp4": "video/mp4", ".ogv": "video/ogg", ".ogg": "video/ogg"}


def guess_mime(path: Path) -> str:
    return MIME_BY_SUFFIX.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def add_video(store: TimelineStore, path: Path, title: str, video_id: str | None = None, variant: str = "") -> str:
    """Register a media file (stored by absolute path, not copied); returns the video id."""
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    vid = video_id or path.stem
    store.set_video_media(vid, title, str(path), guess_mime(path))
    if variant:
        store.ensure_video(vid, variant)
    return vid


def make_demo_video(path: Path, *, seconds: float = 12.0, fps: int = 30, size: tuple[int, int] = (320, 180)) -> None:
    """A small VP8/WebM clip of four coloured scenes with a running clock (OpenCV's bundled
    FFmpeg has a VP8 encoder; WebM/VP8 plays in Debian's Chromium, also offline/headless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write VP8/WebM here")
    scenes = [("Scene 1: calm", (90, 60, 20)), ("Scene 2: joke", (30, 140, 220)),
              ("Scene 3: twist", (40, 30, 160)), ("Scene 4: end", (60, 120, 60))]
    w, h = size
    n = int(seconds * fps)
    for i in range(n):
        title, colour = scenes[min(len(scenes) - 1, i * len(scenes) // n)]
        frame = np.full((h, w, 3), colour, np.uint8)
        cv2.putText(frame, title, (12, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(frame, f"{i / fps:5.2f} s", (12, h - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        writer.write(frame)
    writer.release()
    tmp.replace(path)


def ensure_demo(store: TimelineStore, data_dir: Path) -> None:
    """Makes and registers the demo video once per data dir, so /watch/demo works right away."""
    path = data_dir / "media" / "demo.webm"
    if not path.exists():
        log.info("making the demo video at %s", path)
        make_demo_video(path)
    known = {v["video_id"]: v for v in store.list_videos()}
    if known.get(DEMO_ID, {}).get("media_path") != str(path.resolve()):
        add_video(store, path, "Affectline demo (generated)", DEMO_ID)

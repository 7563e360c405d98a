"""Holding and decoding a recording: the temporary copy, the size limit, and OpenCV/FFmpeg
decoding with each frame's own timestamp (CAP_PROP_POS_MSEC, so variable frame rate is kept).

Privacy: a recording that arrives as a stream (stdin, later an upload) is spooled to a private
temporary file (mode 0600, in a fresh 0700 directory under TMPDIR) that is deleted when the
`held_recording` block ends, whatever the outcome (error, Ctrl-C). A local file is read in
place and never copied. Neither the recording nor its path is ever logged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# FFmpeg's and OpenCV's own console messages ("moov atom not found", ...) would break the CLI's
# one-line errors: silenced (read by OpenCV when it first opens a capture).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

CHUNK = 1 << 20


class RecordingError(ValueError):
    """A recording that cannot be analysed; the message is one line for the user. The
    subclasses say why, so that the RPC can answer each with its own status."""


class NotAVideo(RecordingError):
    """Not a file OpenCV/FFmpeg can decode, or one without a video stream."""


class TruncatedRecording(RecordingError):
    """Decoding stopped well short of what the container announces, or the upload ended early."""


class RecordingTooLarge(RecordingError):
    """Past the size limit (AFFECTLINE_RECORDING_MAX_MB)."""


class NoFaceFound(RecordingError):
    """Decoded, but no frame has a face."""


class ConsentMissing(RecordingError):
    """The consent record does not cover the emotion scope."""


def too_large(max_bytes: int) -> RecordingTooLarge:
    return RecordingTooLarge(f"the recording is larger than the limit of {max_bytes / 2**20:.0f} MB")



def spool(stream: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copies stream to dest, refusing (RecordingError) once past max_bytes. Returns the size."""
    n = 0
    with open(dest, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
        while True:
            block = stream.read(CHUNK)
            if not block:
                return n
            n += len(block)
            if n > max_bytes:
                raise too_large(max_bytes)
            out.write(block)


@contextmanager
def held_recording(source: str | Path, *, max_bytes: int, stdin: BinaryIO | None = None) -> Iterator[Path]:
    """The recording as a local file for the duration of the block.

    `source` "-" reads the recording from `stdin` (default: sys.stdin.buffer) into a temporary
    file, deleted on exit; a path is used in place. Either way a recording over `max_bytes` is
    refused before any decoding."""
    if str(source) != "-":
        path = Path(source)
        if not path.is_file():
            raise RecordingError("the recording file does not exist or is not a regular file")
        if path.stat().st_size > max_bytes:
            raise too_large(max_bytes)
        yield path
        return
    import sys

    tmpdir = Path(tempfile.mkdtemp(prefix="affectline-recording-"))  # 0700
    try:
        dest = tmpdir / "recording"
        spool(stdin or sys.stdin.buffer, dest, max_bytes)
        yield dest
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    frame_count: int  # the container's figure (an estimate for some formats); 0 if unknown
    fps: float


class Decoder:
    """Frames of a recording in decoding order as (index, timestamp ms, BGR frame).

    A reader thread decodes ahead (bounded queue), so decoding overlaps detection."""

    def __init__(self, path: Path, *, prefetch: int = 16) -> None:
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise NotAVideo("the file is not a video OpenCV/FFmpeg can decode (or it is truncated)")
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.info = VideoInfo(w, h, max(n, 0), float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0))
        if w <= 0 or h <= 0:
            self._cap.release()
            raise NotAVideo("the file has no video stream")
        self._q: queue.Queue[tuple[int, float, np.ndarray] | None | BaseException] = queue.Queue(prefetch)
        self._stop = threading.Event()
        self.decode_s = 0.0  # time spent in read(), reader thread
        self.frames = 0
        self._thread = threading.Thread(target=self._read, name="affectline-decode", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import time

        try:
            i = 0
            while not self._stop.is_set():
                t = time.perf_counter()
                ok, frame = self._cap.read()
                ts = self._cap.get(cv2.CAP_PROP_POS_MSEC) if ok else 0.0
                self.decode_s += time.perf_counter() - t
                if not ok:
                    break
                self._put((i, float(ts), frame))
                i += 1
            self.frames = i
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._cap.release()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_complete(info: VideoInfo, decoded: int, last_ts_ms: float | None) -> None:
    """Raises RecordingError when decoding stopped well short of what the container announces
    (a truncated file): fewer than 90 % of its frames and more than one second missing."""
    if decoded == 0:
        raise NotAVideo("no frame could be decoded (truncated or not a video)")
    if info.frame_count > 0 and decoded < 0.9 * info.frame_count:
        missing_s = (info.frame_count - decoded) / (info.fps or 30.0)
        if missing_s > 1.0 or decoded < 0.5 * info.frame_count:
            raise TruncatedRecording(f"the recording is truncated: {decoded} of {info.frame_count} frames could be decoded")

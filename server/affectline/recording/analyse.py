"""A recording -> the same per-frame timeline a live session stores.

Pipeline per frame: decode (reader thread, OpenCV/FFmpeg, the frame's own timestamp) ->
BlazeFace (the browser's detector) -> the browser's eye-aligned gray crop -> the model, through
the real DynamicBatcher at priority LOW (live sessions first) -> FrameRecords with the live
path's smoothing -> stored as a session of the campaign video, video_time_ms = the frame's
timestamp + offset_ms, with its consent record.

Nothing is stored until the whole recording has been decoded and scored: a truncated file, a
file that is not a video, a recording with no face, a cancel (Ctrl-C) or any other failure
before that point leaves the database untouched. The frames are then written through the live
path's GroupCommitWriter (TimelineStore.append_batches), and the session ended "completed".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from affectline.inference.batcher import LOW
from affectline.inference.smoothing import EmaState, SmoothingConfig, smooth_batch
from affectline.recording.align import aligned_crop_rgb
from affectline.recording.blazeface import BlazeFace, Face
from affectline.recording.decode import ConsentMissing, Decoder, NoFaceFound, RecordingError, VideoInfo, check_complete
from affectline.storage.records import EMOTIONS, BatchRecord, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo

REQUIRED_SCOPE = "emotion"
CHUNK_FRAMES = 32  # frames per model request and per stored batch


class Score(Protocol):
    def __call__(self, crops: np.ndarray, *, sequence: str | None = None, priority: int = ...) -> Awaitable[np.ndarray]: ...


@dataclass
class StageTimes:
    """Seconds spent per stage (CPU-side wall time of each stage; stages overlap in the pipeline)."""

    decode: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    infer: float = 0.0
    store: float = 0.0
    wall: float = 0.0
    frames: int = 0
    faces: int = 0

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: getattr(self, k) * 1000 / n for k in ("decode", "detect", "crop", "infer", "store")}

    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0


@dataclass(frozen=True, slots=True)
class FrameResult:
    index: int  # decoding order
    recording_ms: int  # the frame's own timestamp in the recording
    video_time_ms: int  # recording_ms + offset
    face: Face | None
    probs: tuple[float, ...] | None  # EMOTIONS order
    smoothed: tuple[float, ...] | None = None


@dataclass
class Analysis:
    info: VideoInfo
    frames: list[FrameResult]
    times: StageTimes
    skipped_before_video: int = 0  # frames whose video time would be negative (offset < 0)


def load_consent(path: Path) -> ConsentInfo:
    """The consent file: JSON {"notice_version": str, "consented_at": ISO 8601, "scopes": [...]},
    scopes including "emotion"."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RecordingError("the consent file does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordingError(f"the consent file is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordingError("the consent file must hold a JSON object")
    notice, at, scopes = data.get("notice_version"), data.get("consented_at"), data.get("scopes")
    if not isinstance(notice, str) or not notice.strip():
        raise RecordingError("the consent file needs a non-empty notice_version")
    try:
        when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        raise RecordingError("the consent file needs consented_at as an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise RecordingError("the consent file needs scopes as a list of strings")
    clean = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    if REQUIRED_SCOPE not in clean:
        raise ConsentMissing(f"the viewer has not consented to scope {REQUIRED_SCOPE!r}; nothing is analysed")
    return ConsentInfo(notice.strip(), when.astimezone(timezone.utc), clean)


def _to_emotions(class_names: Sequence[str]) -> np.ndarray:
    """Column order that maps the model's classes onto EMOTIONS."""
    try:
        return np.array([list(class_names).index(e) for e in EMOTIONS])
    except ValueError:
        raise RecordingError(f"the model's classes {tuple(class_names)} are not the timeline's {EMOTIONS}") from None


class RecordingAnalyser:
    def __init__(self, detector: BlazeFace, score: Score, crop_size: tuple[int, int],
                 class_names: Sequence[str], *, infer_seconds: Callable[[], float] = lambda: 0.0,
                 in_flight: int = 3) -> None:
        if crop_size[0] != crop_size[1]:
            raise ValueError("the aligned crop is square; the model's crop size is not")
        self._detector = detector
        self._score = score
        self._size = crop_size[0]
        self._cols = _to_emotions(class_names)
        self._infer_seconds = infer_seconds
        self._in_flight = in_flight

    def _produce(self, frames, times: StageTimes) -> list[tuple[int, float, Face | None, np.ndarray | None]]:
        """Detects and crops up to CHUNK_FRAMES frames (in a worker thread)."""
        out = []
        for index, ts, bgr in frames:
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            face = self._detector.detect_rgb(rgb)
            t1 = time.perf_counter()
            crop = aligned_crop_rgb(rgb, face.eye_l, face.eye_r, self._size) if face else None
            times.detect += t1 - t0
            times.crop += time.perf_counter() - t1
            out.append((index, ts, face, crop))
            if len(out) >= CHUNK_FRAMES:
                break
        return out

    async def analyse(self, path: Path, *, offset_ms: int = 0, progress: Callable[[int], None] | None = None,
                      total: Callable[[int], None] | None = None,
                      decoded: Callable[[int], None] | None = None) -> Analysis:
        """progress(n): n more frames scored; decoded(n): n more frames decoded and detected;
        total(n): the container's frame count (0 if unknown), once, before the first frame."""
        times = StageTimes()
        started = time.perf_counter()
        infer0 = self._infer_seconds()
        results: list[FrameResult] = []
        skipped = 0
        last_ts: float | None = None
        with Decoder(path) as decoder:
            if total:
                total(decoder.info.frame_count)
            frames = iter(decoder)
            pending: deque[tuple[list, asyncio.Future[np.ndarray] | None]] = deque()

            async def collect() -> None:
                nonlocal skipped
                chunk, task = pending.popleft()
                probs = (await task)[:, self._cols] if task is not None else None
                j = 0
                for index, ts, face, crop in chunk:
                    p = None
                    if crop is not None:
                        p = tuple(float(v) for v in probs[j])  # type: ignore[index]
                        j += 1
                    rec_ms = int(round(ts))
                    vt = rec_ms + offset_ms
                    if vt < 0:
                        skipped += 1
                        continue
                    results.append(FrameResult(index, rec_ms, vt, face, p))
                if progress:
                    progress(len(chunk))

            try:
                while True:
                    chunk = await asyncio.to_thread(self._produce, frames, times)
                    if not chunk:
                        break
                    last_ts = chunk[-1][1]
                    times.frames += len(chunk)
                    if decoded:
                        decoded(len(chunk))
                    crops = [c for *_, c in chunk if c is not None]
                    task = None
                    if crops:
                        times.faces += len(crops)
                        task = asyncio.ensure_future(self._score(np.stack(crops), priority=LOW))
                    pending.append((chunk, task))
                    while len(pending) >= self._in_flight:
                        await collect()
                while pending:
                    await collect()
            finally:
                for _, task in pending:
                    if task is not None:
                        task.cancel()
            check_complete(decoder.info, decoder.frames, last_ts)
            times.decode = decoder.decode_s
            info = decoder.info
        if times.faces == 0:
            raise NoFaceFound(f"no face was found in any of the {times.frames} frames; nothing is stored")
        times.infer = self._infer_seconds() - infer0
        times.wall = time.perf_counter() - started
        return Analysis(info, results, times, skipped)


def smooth(frames: list[FrameResult], config: SmoothingConfig) -> list[FrameResult]:
    """The live path's EMA smoothing over the face frames, in video time order."""
    state = EmaState()
    face_rows = [f for f in frames if f.probs is not None]
    smoothed = smooth_batch(state, [f.video_time_ms for f in face_rows], [f.probs for f in face_rows], config)  # type: ignore[misc]
    by_index = {f.index: s for f, s in zip(face_rows, smoothed, strict=True)}
    return [FrameResult(f.index, f.recording_ms, f.video_time_ms, f.face, f.probs, by_index.get(f.index))
            for f in frames]


def new_viewer_id() -> str:
    """A pseudonymous viewer id for a recording given without one (random; derived from nothing)."""
    return "rec-" + uuid.uuid4().hex


def session_record(*, video_id: str, variant_id: str, viewer_id: str, consent: ConsentInfo, model: str,
                   capture_fps: float, now: datetime | None = None) -> SessionRecord:
    now = now or datetime.now(timezone.utc)
    return SessionRecord(
        session_id=uuid.uuid4().hex, video_id=video_id, variant_id=variant_id, viewer=ViewerInfo(viewer_id),
        consent=consent, capture_fps=min(120.0, max(1.0, capture_fps)), model=model, started_at=now,
        expires_at=now + timedelta(hours=1),
        # No live upload: no bearer token and no session key exist; random values that open nothing.
        token_sha256=hashlib.sha256(os.urandom(32)).digest(), wrapped_key=b"",
    )


def batches(frames: list[FrameResult], per_batch: int = CHUNK_FRAMES) -> list[BatchRecord]:
    out = []
    for seq, start in enumerate(range(0, len(frames), per_batch)):
        recs = tuple(
            FrameRecord(seq=seq, index=i, video_time_ms=f.video_time_ms, captured_at=None,
                        face_present=f.probs is not None, probs=f.probs,
                        head_yaw_deg=f.face.yaw_deg if f.face and f.probs is not None else None,
                        face_box_size=f.face.box_size if f.face and f.probs is not None else None,
                        smoothed=f.smoothed)
            for i, f in enumerate(frames[start:start + per_batch])
        )
        nonce = os.urandom(12)
        digest = hashlib.sha256(nonce + json.dumps([(r.video_time_ms, r.probs) for r in recs]).encode()).digest()
        out.append(BatchRecord(seq=seq, nonce=nonce, digest=digest, frames=recs))
    return out


async def store_timeline(store: Any, writer: Any, record: SessionRecord, frames: list[FrameResult]) -> None:
    """create_session, every batch through the GroupCommitWriter, end_session("completed").

    All or nothing: on any failure (or cancel) while storing, the session is deleted with
    whatever of it was stored (TimelineStore.delete_session), and so is a viewer it made."""
    sid = record.session_id
    await asyncio.to_thread(store.create_session, record)
    try:
        stored = await asyncio.gather(*(writer.write(sid, b) for b in batches(frames)))
        if not all(stored):
            raise RuntimeError("a batch of the recording was already stored")
        await asyncio.to_thread(store.end_session, sid, "completed", datetime.now(timezone.utc))
    except BaseException:
        await asyncio.shield(asyncio.to_thread(store.delete_session, sid))
        raise


def timeline_rows(frames: list[FrameResult]) -> list[dict[str, Any]]:
    rows = []
    for f in frames:
        row: dict[str, Any] = {"frame": f.index, "recording_ms": f.recording_ms, "video_time_ms": f.video_time_ms,
                               "face_present": f.probs is not None,
                               "dominant": EMOTIONS[int(np.argmax(f.probs))] if f.probs is not None else ""}
        for i, e in enumerate(EMOTIONS):
            row[f"p_{e}"] = round(f.probs[i], 6) if f.probs is not None else None
        for i, e in enumerate(EMOTIONS):
            row[f"s_{e}"] = round(f.smoothed[i], 6) if f.smoothed is not None else None
        row["head_yaw_deg"] = round(f.face.yaw_deg, 2) if f.face and f.probs is not None else None
        row["face_box_size"] = round(f.face.box_size, 4) if f.face and f.probs is not None else None
        rows.append(row)
    return rows


def write_timeline(path: Path, frames: list[FrameResult], meta: dict[str, Any]) -> None:
    """--out: CSV (one row per frame) for .csv, else JSON {meta..., "frames": [...]}."""
    rows = timeline_rows(frames)
    if path.suffix.lower() == ".csv":
        import csv

        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["frame"], lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else int(v) if isinstance(v, bool) else v) for k, v in r.items()})
    else:
        path.write_text(json.dumps({**meta, "frames": rows}, indent=1) + "\n")


def capture_fps(frames: list[FrameResult], info: VideoInfo) -> float:
    if len(frames) >= 2:
        span = frames[-1].recording_ms - frames[0].recording_ms
        if span > 0:
            return (len(frames) - 1) * 1000.0 / span
    return info.fps if info.fps and math.isfinite(info.fps) else 30.0

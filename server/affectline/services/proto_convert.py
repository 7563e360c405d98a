"""Conversions between storage records and API messages."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from affectline.storage.records import EMOTIONS, FrameRecord
from affectline.v1 import common_pb2, session_pb2


def scores_message(probs: Sequence[float] | None) -> common_pb2.EmotionScores | None:
    if probs is None:
        return None
    return common_pb2.EmotionScores(**{name: float(p) for name, p in zip(EMOTIONS, probs, strict=True)})


def top_emotion(probs: Sequence[float] | None) -> int:
    """Emotion enum value of the most probable class (UNSPECIFIED without probabilities)."""
    if probs is None:
        return common_pb2.EMOTION_UNSPECIFIED
    best = max(range(len(probs)), key=lambda i: probs[i])
    return best + 1  # enum values follow EMOTIONS order, after UNSPECIFIED = 0


def timestamp(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(timezone.utc))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=timezone.utc)


def frame_result(frame: FrameRecord) -> session_pb2.FrameResult:
    smoothed = frame.smoothed or frame.probs
    return session_pb2.FrameResult(
        video_time_ms=frame.video_time_ms,
        face_present=frame.face_present,
        scores=scores_message(frame.probs),
        top_emotion=top_emotion(smoothed),
        smoothed_scores=scores_message(smoothed),
    )

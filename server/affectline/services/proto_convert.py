"""Conversions between storage records and API messages.

`add_frame_results` and `from_timestamp` are on the per-frame hot path of PushCrops, so they
set fields directly instead of building keyword dicts (about 3x cheaper with upb protobuf).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from affectline.storage.records import EMOTIONS, FrameRecord
from affectline.v1 import common_pb2, session_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def scores_message(probs: Sequence[float] | None) -> common_pb2.EmotionScores | None:
    if probs is None:
        return None
    return common_pb2.EmotionScores(**{name: float(p) for name, p in zip(EMOTIONS, probs, strict=True)})


def _set_scores(message: common_pb2.EmotionScores, probs: Sequence[float]) -> None:
    # Unpacking checks the count; the order is EMOTIONS'.
    (message.angry, message.disgust, message.fear, message.happy,
     message.sad, message.surprise, message.neutral) = probs


def top_emotion(probs: Sequence[float] | None) -> int:
    """Emotion enum value of the most probable class (UNSPECIFIED without probabilities);
    the first one on a tie."""
    if probs is None:
        return common_pb2.EMOTION_UNSPECIFIED
    return list(probs).index(max(probs)) + 1  # enum values follow EMOTIONS order, after UNSPECIFIED = 0


def timestamp(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(timezone.utc))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    """Aware UTC datetime, sub-microsecond nanos truncated (as Timestamp.ToDatetime does)."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def add_frame_results(results: Iterable[FrameRecord], into: session_pb2.PushCropsResponse) -> None:
    """Appends one FrameResult per frame to `into.results`."""
    for frame in results:
        out = into.results.add(video_time_ms=frame.video_time_ms, face_present=frame.face_present)
        if frame.probs is None:
            continue
        smoothed = frame.smoothed or frame.probs
        _set_scores(out.scores, frame.probs)
        _set_scores(out.smoothed_scores, smoothed)
        out.top_emotion = top_emotion(smoothed)

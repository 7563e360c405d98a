"""AnalyticsService: read-only views of stored timelines."""

from __future__ import annotations

import asyncio

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.services.proto_convert import scores_message, top_emotion
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import analytics_pb2

DEFAULT_BUCKET_MS = 1000
MIN_BUCKET_MS = 10
MAX_BUCKET_MS = 3_600_000


class AnalyticsService:
    def __init__(self, *, store: TimelineStore) -> None:
        self._store = store

    async def get_session_timeline(
        self, request: analytics_pb2.GetSessionTimelineRequest, ctx: object = None
    ) -> analytics_pb2.GetSessionTimelineResponse:
        if not request.session_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "session_id is required")
        record = await asyncio.to_thread(self._store.get_session, request.session_id)
        if record is None:
            raise ConnectError(Code.NOT_FOUND, f"unknown session {request.session_id!r}")
        frames = await asyncio.to_thread(self._store.session_frames, request.session_id)
        return analytics_pb2.GetSessionTimelineResponse(
            session_id=record.session_id,
            video_id=record.video_id,
            variant_id=record.variant_id,
            frames=[
                analytics_pb2.TimelineFrame(
                    video_time_ms=f.video_time_ms,
                    face_present=f.face_present,
                    scores=scores_message(f.probs),
                    top_emotion=top_emotion(f.smoothed or f.probs),
                    smoothed_scores=scores_message(f.smoothed or f.probs),
                    head_yaw_deg=f.head_yaw_deg,
                    head_pitch_deg=f.head_pitch_deg,
                    face_box_size=f.face_box_size,
                )
                for f in frames
            ],
        )

    async def get_video_timeline(
        self, request: analytics_pb2.GetVideoTimelineRequest, ctx: object = None
    ) -> analytics_pb2.GetVideoTimelineResponse:
        if not request.video_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "video_id is required")
        bucket_ms = request.bucket_ms or DEFAULT_BUCKET_MS
        if not MIN_BUCKET_MS <= bucket_ms <= MAX_BUCKET_MS:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"bucket_ms must be within {MIN_BUCKET_MS}..{MAX_BUCKET_MS}, got {bucket_ms}"
            )
        variant = request.variant_id or None
        sessions = await asyncio.to_thread(self._store.count_sessions, request.video_id, variant)
        if sessions == 0:
            what = f"video {request.video_id!r}" + (f" variant {variant!r}" if variant else "")
            raise ConnectError(Code.NOT_FOUND, f"no sessions recorded for {what}")
        buckets = await asyncio.to_thread(self._store.video_timeline, request.video_id, variant, bucket_ms)
        return analytics_pb2.GetVideoTimelineResponse(
            video_id=request.video_id,
            variant_id=request.variant_id,
            bucket_ms=bucket_ms,
            sessions=sessions,
            buckets=[
                analytics_pb2.TimelineBucket(
                    start_ms=b.start_ms,
                    mean_scores=scores_message(b.mean_probs),
                    viewers=b.viewers,
                    frames=b.frames,
                    frames_with_face=b.frames_with_face,
                )
                for b in buckets
            ],
        )

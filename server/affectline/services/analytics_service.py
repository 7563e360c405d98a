"""AnalyticsService: read-only views of stored timelines."""

from __future__ import annotations

import asyncio
import base64
import json

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.services.proto_convert import scores_message, top_emotion
from affectline.storage.records import FrameRecord
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import analytics_pb2

DEFAULT_BUCKET_MS = 1000
MIN_BUCKET_MS = 10
MAX_BUCKET_MS = 3_600_000
# GetSessionTimeline pages (docs/api.md): ~100 bytes a frame, so a full page is ~1 MB.
DEFAULT_PAGE_SIZE = 5_000
MAX_PAGE_SIZE = 10_000
_TOKEN_VERSION = 1


def page_token(session_id: str, last: FrameRecord) -> str:
    """Opaque, versioned token: the last frame served (keyset paging), bound to its session.
    A later version can add fields; an unknown version is refused, not misread."""
    raw = json.dumps({"v": _TOKEN_VERSION, "s": session_id, "seq": last.seq, "i": last.index}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_page_token(session_id: str, token: str) -> tuple[int, int] | None:
    if not token:
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if fields["v"] != _TOKEN_VERSION or fields["s"] != session_id:
            raise ValueError("wrong version or session")
        seq, index = fields["seq"], fields["i"]
        if not (isinstance(seq, int) and isinstance(index, int)):
            raise ValueError("bad position")
        return seq, index
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, "page_token is not a next_page_token of this session") from exc


def _timeline_frame(f: FrameRecord) -> analytics_pb2.TimelineFrame:
    return analytics_pb2.TimelineFrame(
        video_time_ms=f.video_time_ms,
        face_present=f.face_present,
        scores=scores_message(f.probs),
        top_emotion=top_emotion(f.smoothed or f.probs),
        smoothed_scores=scores_message(f.smoothed or f.probs),
        head_yaw_deg=f.head_yaw_deg,
        head_pitch_deg=f.head_pitch_deg,
        face_box_size=f.face_box_size,
    )


class AnalyticsService:
    def __init__(self, *, store: TimelineStore) -> None:
        self._store = store

    async def get_session_timeline(
        self, request: analytics_pb2.GetSessionTimelineRequest, ctx: object = None
    ) -> analytics_pb2.GetSessionTimelineResponse:
        if not request.session_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "session_id is required")
        after = parse_page_token(request.session_id, request.page_token)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # The reads and the message building both run in a worker thread: a page is up to
        # 10,000 frames, too much work for the event loop that serves every live session.
        return await asyncio.to_thread(self._timeline_page, request.session_id, after, size)

    def _timeline_page(self, session_id: str, after: tuple[int, int] | None, size: int) -> analytics_pb2.GetSessionTimelineResponse:
        record = self._store.get_session(session_id)
        if record is None:
            raise ConnectError(Code.NOT_FOUND, f"unknown session {session_id!r}")
        frames = self._store.session_frames_page(session_id, after, size + 1)  # one more: is there a next page?
        response = analytics_pb2.GetSessionTimelineResponse(
            session_id=record.session_id,
            video_id=record.video_id,
            variant_id=record.variant_id,
            frames=[_timeline_frame(f) for f in frames[:size]],
        )
        if len(frames) > size:
            response.next_page_token = page_token(session_id, frames[size - 1])
        return response

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

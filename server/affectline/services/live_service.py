"""LiveService: WatchLive streams the live feed's snapshots until the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from affectline.services.live_feed import LiveFeed, LiveView
from affectline.services.proto_convert import scores_message
from affectline.v1 import live_pb2

MIN_INTERVAL_MS = 250
MAX_INTERVAL_MS = 60_000


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def snapshot_message(view: LiveView) -> live_pb2.LiveSnapshot:
    return live_pb2.LiveSnapshot(
        at=_timestamp(view.at),
        active_sessions=view.active_sessions,
        frames_per_second=view.frames_per_second,
        window_s=view.window_s,
        min_viewers=view.min_viewers,
        videos=[
            live_pb2.LiveVideo(
                video_id=v.video_id,
                active_sessions=v.active_sessions,
                variants=[live_pb2.LiveVariant(variant_id=k, active_sessions=n) for k, n in v.variants],
                frames_per_second=v.frames_per_second,
                seconds=[
                    live_pb2.LiveSecond(
                        start=_timestamp(s.start_s), viewers=s.viewers, frames=s.frames,
                        frames_with_face=s.frames_with_face, mean_scores=scores_message(s.mean),
                        suppressed=s.frames_with_face > 0 and s.mean is None,
                    )
                    for s in v.seconds
                ],
            )
            for v in view.videos
        ],
    )


class LiveService:
    def __init__(self, feed: LiveFeed, *, default_interval_ms: int = 1000) -> None:
        self._feed = feed
        self._default_ms = default_interval_ms
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every stream after its current snapshot (server shutdown)."""
        self._closing.set()

    async def watch_live(self, request: live_pb2.WatchLiveRequest, ctx: object = None) -> AsyncIterator[live_pb2.LiveSnapshot]:
        interval_ms = request.interval_ms or self._default_ms
        interval_s = min(max(interval_ms, MIN_INTERVAL_MS), MAX_INTERVAL_MS) / 1000.0
        videos = frozenset(request.video_ids)
        # Nothing here outlives the call: when the client goes away, the transport cancels this
        # generator while it waits (gRPC, and HTTP through serving/client_watch.py).
        while not self._closing.is_set():
            yield snapshot_message(self._feed.snapshot(videos))
            try:
                async with asyncio.timeout(interval_s):
                    await self._closing.wait()
            except TimeoutError:
                pass

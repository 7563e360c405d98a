"""The periodic check behind `key_moments.changed`: key moments move as sessions end, so every
interval the campaigns with sessions ended since the last check get their key moments
recomputed, and the dispatcher is told when they differ from the last ones seen.

Wired only where the analytics provide a key-moments function (app.py: `analytics_source`,
the AnalyticsService's GetKeyMoments for campaigns with a subscribed endpoint). The last
payload per campaign is kept in memory: after a restart, the first check of a campaign counts
as a change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format

from affectline.storage.records import FrameRecord, SessionRecord
from affectline.v1 import analytics_pb2, session_pb2
from affectline.webhooks.background import BackgroundTask

log = logging.getLogger(__name__)

# A campaign's key moments as JSON-able data, or None when there are none to report yet.
KeyMomentsSource = Callable[[str], Awaitable[Mapping[str, Any] | None]]
# WebhookDispatcher.key_moments_changed
OnChange = Callable[[str, Mapping[str, Any]], None]
# What of a payload makes it "changed" (default: all of it).
Identity = Callable[[Mapping[str, Any]], Any]


def moment_identity(payload: Mapping[str, Any]) -> Any:
    """The moments of an `analytics_source` payload as (metric, kind, start, end, peak): a moment
    appearing, vanishing or moving is a change; its value, size or viewer count alone is not
    (they drift with every new viewer)."""
    return sorted((m["metric"], m["kind"], m["startS"], m["endS"], m["peakS"]) for m in payload.get("moments", ()))


def analytics_source(get_key_moments: Callable[[analytics_pb2.GetKeyMomentsRequest], Awaitable[Any]],
                     subscribed: Callable[[str], bool]) -> KeyMomentsSource:
    """A campaign's key moments as GetKeyMoments reports them (default thresholds, no filter),
    in proto3 JSON; None for a campaign without a `key_moments.changed` endpoint (nothing is
    computed for it) or without rollups yet. `subscribed` is blocking: it runs in a thread, and
    so do the analytics (AnalyticsService reads and computes off the event loop)."""

    async def source(video_id: str) -> Mapping[str, Any] | None:
        if not await asyncio.to_thread(subscribed, video_id):
            return None
        try:
            response = await get_key_moments(analytics_pb2.GetKeyMomentsRequest(video_id=video_id))
        except ConnectError as exc:
            if exc.code == Code.NOT_FOUND:
                return None
            raise
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)

    return source


class KeyMomentsWatch:
    def __init__(self, source: KeyMomentsSource, on_change: OnChange, *, interval_s: float,
                 identity: Identity | None = None) -> None:
        self._source = source
        self._identity = identity or (lambda payload: payload)
        self._nothing = self._digest({})  # a campaign not seen yet: no moments (none is no change)
        self._on_change = on_change
        self._interval_s = interval_s
        self._dirty: set[str] = set()
        self._last: dict[str, bytes] = {}  # video -> digest of the last payload seen
        # Started and stopped by the server (app.py) with its other tasks.
        self.background = BackgroundTask("affectline-key-moments-watch", self._run)

    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None:
        pass  # moments are checked when sessions end, not per batch

    def session_ended(self, summary: session_pb2.SessionSummary) -> None:
        self._dirty.add(summary.video_id)

    def _digest(self, payload: Mapping[str, Any]) -> bytes:
        return hashlib.sha256(json.dumps(self._identity(payload), sort_keys=True, default=str).encode()).digest()

    async def check(self) -> None:
        """One round: every campaign marked since the last round."""
        videos, self._dirty = self._dirty, set()
        for video_id in sorted(videos):
            try:
                payload = await self._source(video_id)
            except Exception:
                log.exception("key moments of video %s could not be computed; retried next round", video_id)
                self._dirty.add(video_id)
                continue
            if payload is None:
                continue
            digest = self._digest(payload)
            if self._last.get(video_id, self._nothing) != digest:
                self._last[video_id] = digest
                self._on_change(video_id, payload)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()

"""Turns events into deliveries, one per subscribed endpoint of the event's campaign.

Events come from the session service (`session_ended`, a SessionEvents listener) and from the
analytics (`key_moments_changed`). Both calls only build the body and enqueue it; a task reads
the campaign's endpoints from the database, off the event loop, and offers the deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from affectline.storage.records import FrameRecord, SessionRecord
from affectline.v1 import session_pb2
from affectline.webhooks.background import BackgroundTask
from affectline.webhooks.delivery import Delivery, DeliveryQueue
from affectline.webhooks.events import (
    KEY_MOMENTS_CHANGED,
    SESSION_ENDED,
    event_body,
    new_event_id,
)
from affectline.webhooks.store import Target

log = logging.getLogger(__name__)

# The endpoints of a campaign subscribed to an event (WebhookStore.targets; blocking).
FindTargets = Callable[[str, str], Sequence[Target]]


class WebhookDispatcher:
    def __init__(self, find_targets: FindTargets, deliveries: DeliveryQueue, *, max_events: int = 1000,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._find_targets = find_targets
        self._deliveries = deliveries
        self._now = now
        self._events: asyncio.Queue[tuple[str, str, str, bytes]] = asyncio.Queue(max_events)
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, once started
        # Started and stopped by the server (app.py) with its other tasks.
        self.background = BackgroundTask("affectline-webhook-dispatch", self._run)

    # --- SessionEvents --------------------------------------------------------------------

    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None:
        pass  # no webhook per batch

    def session_ended(self, summary: session_pb2.SessionSummary) -> None:
        data = json_format.MessageToDict(summary, always_print_fields_with_no_presence=True)
        self._enqueue(SESSION_ENDED, summary.video_id, data)

    # --- for the analytics ------------------------------------------------------------------

    def key_moments_changed(self, video_id: str, payload: Mapping[str, Any]) -> None:
        """Delivers a campaign's key moments (JSON-able) to its `key_moments.changed` endpoints.
        Callable from any thread (analytics may compute moments in a worker thread)."""
        self._enqueue(KEY_MOMENTS_CHANGED, video_id, payload)

    # --- the task ---------------------------------------------------------------------------

    def _enqueue(self, event: str, video_id: str, data: Mapping[str, Any]) -> None:
        event_id = new_event_id()
        item = (event_id, event, video_id, event_body(event_id, event, video_id, self._now(), data))
        try:
            caller = asyncio.get_running_loop()
        except RuntimeError:
            caller = None
        if self._loop is not None and caller is not self._loop:
            self._loop.call_soon_threadsafe(self._put, item)  # asyncio queues are not thread-safe
        else:
            self._put(item)

    def _put(self, item: tuple[str, str, str, bytes]) -> None:
        try:
            self._events.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("webhook event queue full: dropped %s %s of video %s", item[1], item[0], item[2])

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            event_id, event, video_id, body = await self._events.get()
            try:
                targets = await asyncio.to_thread(self._find_targets, video_id, event)
            except Exception:  # the database is down: this event is lost, later ones may go out
                log.exception("webhooks: could not read the endpoints of video %s for %s", video_id, event_id)
                continue
            for target in targets:
                self._deliveries.offer(Delivery(target.webhook_id, target.url, target.secret, event_id, event, body))

"""What the session service tells the rest of the server: a batch was stored, a session ended.

Listeners (the live feed, webhook deliveries) run on the event loop inside the RPC, so each
must be cheap and must not block: they update memory or enqueue work, nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from affectline.storage.records import FrameRecord, SessionRecord
from affectline.v1 import session_pb2

log = logging.getLogger(__name__)


class SessionEvents(Protocol):
    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None: ...

    def session_ended(self, summary: session_pb2.SessionSummary) -> None: ...


class SessionEventFanOut:
    """Calls every listener in turn. A listener's failure is logged and swallowed: the batch
    is already stored and acknowledged, so a listener bug must never fail ingestion."""

    def __init__(self, listeners: Sequence[SessionEvents] = ()) -> None:
        self._listeners = tuple(listeners)

    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None:
        for listener in self._listeners:
            try:
                listener.batch_stored(session, frames)
            except Exception:
                log.exception("session event listener %s failed on a stored batch", type(listener).__name__)

    def session_ended(self, summary: session_pb2.SessionSummary) -> None:
        for listener in self._listeners:
            try:
                listener.session_ended(summary)
            except Exception:
                log.exception("session event listener %s failed on a session end", type(listener).__name__)

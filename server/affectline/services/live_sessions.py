"""The in-process view of sessions that are receiving crops.

The database is the truth (sessions survive a restart: their AES keys are stored
wrapped with the server's key-encryption key); this cache holds the unwrapped key
and a per-session lock so one session's batches are handled one at a time, in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from affectline.crypto import KeyWrapper
from affectline.inference.smoothing import EmaState
from affectline.storage.records import SessionRecord
from affectline.storage.timeline_store import TimelineStore


@dataclass(slots=True)
class LiveSession:
    record: SessionRecord
    key: bytes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    frames_accepted: int = 0
    # Highest accepted seq: a higher seq cannot be a retry, so it skips the duplicate lookup.
    max_seq: int | None = None
    smoothing: EmaState = field(default_factory=EmaState)


class LiveSessions:
    def __init__(self, store: TimelineStore, wrapper: KeyWrapper, run_io: Callable) -> None:
        self._store = store
        self._wrapper = wrapper
        self._run_io = run_io
        self._live: dict[str, LiveSession] = {}

    def add(self, record: SessionRecord, key: bytes) -> LiveSession:
        live = LiveSession(record=record, key=key)
        self._live[record.session_id] = live
        return live

    async def get(self, session_id: str) -> LiveSession | None:
        live = self._live.get(session_id)
        if live is not None:
            return live
        record = await self._run_io(self._store.get_session, session_id)
        if record is None:
            return None
        # Another coroutine may have loaded it while we waited on the database.
        live = self._live.get(session_id)
        if live is None:
            key = self._wrapper.unwrap(record.wrapped_key, record.session_id)
            live = LiveSession(record=record, key=key)
            live.frames_accepted = await self._run_io(self._store.count_frames, session_id)
            live.max_seq = await self._run_io(self._store.max_seq, session_id)
            last = await self._run_io(self._store.last_face_frame, session_id)
            if last is not None:  # resume smoothing where the previous process left off
                live.smoothing = EmaState(last.smoothed or last.probs, last.video_time_ms)
            self._live[session_id] = live
        return live

    def forget(self, session_id: str) -> None:
        self._live.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._live)

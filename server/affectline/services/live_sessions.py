"""The in-process view of sessions that are receiving crops.

The database is the truth (sessions survive a restart: their AES keys are stored
wrapped with the server's key-encryption key); this cache holds the unwrapped key
and a per-session lock so one session's batches are handled one at a time, in order.

Loading a session from the database is single-flight: concurrent first batches of a
resumed session share one load, so they share one entry and one lock. Entries leave the
cache when they end, expire or stay unused for `idle_s` (reloaded on their next batch):
the cache holds the sessions in use, not every session ever started.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from affectline.crypto import KeyWrapper
from affectline.inference.smoothing import EmaState
from affectline.storage.records import SessionRecord
from affectline.storage.timeline_store import TimelineStore


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class LiveSession:
    record: SessionRecord
    key: bytes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    frames_accepted: int = 0
    # Highest accepted seq: a higher seq cannot be a retry, so it skips the duplicate lookup.
    max_seq: int | None = None
    smoothing: EmaState = field(default_factory=EmaState)
    last_used: datetime = field(default_factory=_utc_now)


class LiveSessions:
    def __init__(
        self,
        store: TimelineStore,
        wrapper: KeyWrapper,
        run_io: Callable,
        *,
        idle_s: float = 600.0,
        now: Callable[[], datetime] = _utc_now,
        on_evict: Callable[[str], None] = lambda session_id: None,
    ) -> None:
        self._store = store
        self._wrapper = wrapper
        self._run_io = run_io
        self._idle = timedelta(seconds=idle_s)
        self._now = now
        self._on_evict = on_evict
        self._live: dict[str, LiveSession] = {}
        self._loading: dict[str, asyncio.Future[LiveSession | None]] = {}
        # Sweeps run on adds and loads, at most this often: O(sessions) each, O(1) amortised.
        self._sweep_every = timedelta(seconds=max(0.0, min(idle_s / 4, 60.0)))
        self._last_sweep = now()

    def add(self, record: SessionRecord, key: bytes) -> LiveSession:
        self._maybe_sweep()
        live = LiveSession(record=record, key=key, last_used=self._now())
        self._live[record.session_id] = live
        return live

    async def get(self, session_id: str) -> LiveSession | None:
        live = self._live.get(session_id)
        if live is None:
            loading = self._loading.get(session_id)
            if loading is None:
                live = await self._load(session_id)
            else:  # another coroutine is loading it: share its entry (and its lock)
                live = await asyncio.shield(loading)
        if live is not None:
            live.last_used = self._now()
        return live

    async def _load(self, session_id: str) -> LiveSession | None:
        self._maybe_sweep()
        future: asyncio.Future[LiveSession | None] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = future
        try:
            live = await self._read(session_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        else:
            future.set_result(live)
            if live is not None:
                self._live[session_id] = live
            return live
        finally:
            del self._loading[session_id]

    async def _read(self, session_id: str) -> LiveSession | None:
        record = await self._run_io(self._store.get_session, session_id)
        if record is None:
            return None
        key = self._wrapper.unwrap(record.wrapped_key, record.session_id)
        live = LiveSession(record=record, key=key, last_used=self._now())
        live.frames_accepted = await self._run_io(self._store.count_frames, session_id)
        live.max_seq = await self._run_io(self._store.max_seq, session_id)
        last = await self._run_io(self._store.last_face_frame, session_id)
        if last is not None:  # resume smoothing where the previous process left off
            live.smoothing = EmaState(last.smoothed or last.probs, last.video_time_ms)
        return live

    def forget(self, session_id: str) -> None:
        if self._live.pop(session_id, None) is not None:
            self._on_evict(session_id)

    def sweep(self) -> list[str]:
        """Drops ended, expired and idle sessions that no batch is using; returns their ids."""
        now = self._now()
        self._last_sweep = now
        idle_before = now - self._idle
        gone = [
            sid for sid, live in self._live.items()
            if not live.lock.locked()
            and (live.record.ended_at is not None or live.record.expires_at <= now or live.last_used <= idle_before)
        ]
        for sid in gone:
            self.forget(sid)
        return gone

    def _maybe_sweep(self) -> None:
        if self._now() - self._last_sweep >= self._sweep_every:
            self.sweep()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live

    def __len__(self) -> int:
        return len(self._live)

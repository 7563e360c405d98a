"""Send pacing: spreads paced sessions' batches evenly over their batch period.

A viewer's browser sends one batch per period (10 frames at 30 fps: every 333 ms). Where in
that period it sends is arbitrary: it depends on when the viewer clicked "consent". Sessions
with independent phases bunch up by chance, and a batch that arrives with others waits behind
their model runs: at 70-90 % model utilisation that queueing, not the work, is what pushes p99
latency over 100 ms (docs/performance.md, "Send pacing"). The server knows every session's
period, so it can give each session a slot instead: N sessions of one period get the slots
anchor + r * period / N (r = the session's rank in the ring), and each answer tells the
session how long until its slot. The client moves its batch boundary to the slot; its capture
rate does not change, nor does the latency of its frames.

Membership changes move the others by at most one slot spacing: a new session joins at the
end of the ring, and when rank 0 leaves, the anchor moves to the old rank 1. Sessions that
have not sent for `idle_s` give up their slot (paused viewers) and get it back when they send
again. Pure bookkeeping on a clock passed in: no I/O, no threads (the service calls it on the
event loop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

MIN_PERIOD_S = 0.010
MAX_PERIOD_S = 10.0


@dataclass(slots=True)
class _Wheel:
    period_s: float
    anchor: float  # clock time of rank 0's slot (any of its periods)
    ring: list[str] = field(default_factory=list)

    def slot_delay(self, session_id: str, now: float) -> float:
        rank = self.ring.index(session_id)
        slot = self.anchor + rank * self.period_s / len(self.ring)
        return (slot - now) % self.period_s

    def remove(self, session_id: str) -> None:
        rank = self.ring.index(session_id)
        if rank == 0 and len(self.ring) > 1:
            self.anchor += self.period_s / len(self.ring)  # the old rank 1 keeps its slot
        del self.ring[rank]


class SendPacer:
    """Slots for paced sessions, one ring per batch period (rounded to 1 ms)."""

    def __init__(self, *, idle_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_s = idle_s
        self._clock = clock
        self._wheels: dict[int, _Wheel] = {}
        self._period_s: dict[str, float] = {}  # every paced session, in a ring or idle
        self._last_seen: dict[str, float] = {}  # sessions that hold a slot

    @staticmethod
    def period_for(fps: float, frames_per_batch: int) -> float | None:
        """The batch period a client announced, or None when it is not one this pacer takes."""
        if fps <= 0 or frames_per_batch <= 0:
            return None
        period = frames_per_batch / fps
        return period if MIN_PERIOD_S <= period <= MAX_PERIOD_S else None

    def join(self, session_id: str, period_s: float) -> float:
        """Gives the session a slot; returns the seconds until it (0 for the first session)."""
        self._period_s[session_id] = period_s
        return self._take_slot(session_id, self._clock())

    def next_send_in(self, session_id: str) -> float | None:
        """Seconds until the session's next slot, or None when it is not paced."""
        if session_id not in self._period_s:
            return None
        now = self._clock()
        if session_id not in self._last_seen:  # idle and dropped: back in, at the end of the ring
            return self._take_slot(session_id, now)
        self._last_seen[session_id] = now
        return self._wheels[_ring_key(self._period_s[session_id])].slot_delay(session_id, now)

    def leave(self, session_id: str) -> None:
        period_s = self._period_s.pop(session_id, None)
        if period_s is not None and self._last_seen.pop(session_id, None) is not None:
            self._drop_from_wheel(session_id, period_s)

    def paced_sessions(self) -> int:
        return len(self._last_seen)

    def _take_slot(self, session_id: str, now: float) -> float:
        period_s = self._period_s[session_id]
        self._expire_idle(now)
        wheel = self._wheels.get(_ring_key(period_s))
        if wheel is None:  # the ring runs on its first session's exact period
            wheel = self._wheels[_ring_key(period_s)] = _Wheel(period_s, anchor=now)
        if session_id not in self._last_seen:
            wheel.ring.append(session_id)
        self._last_seen[session_id] = now
        return wheel.slot_delay(session_id, now)

    def _expire_idle(self, now: float) -> None:
        # On joins only: O(sessions) there, O(1) on the per-batch path.
        for session_id in [s for s, seen in self._last_seen.items() if now - seen > self._idle_s]:
            del self._last_seen[session_id]
            self._drop_from_wheel(session_id, self._period_s[session_id])

    def _drop_from_wheel(self, session_id: str, period_s: float) -> None:
        key = _ring_key(period_s)
        wheel = self._wheels[key]
        wheel.remove(session_id)
        if not wheel.ring:
            del self._wheels[key]


def _ring_key(period_s: float) -> int:
    return max(1, round(period_s * 1000))

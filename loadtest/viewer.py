"""What every viewer-like user shares: its place in the video, crop frames, session rollover."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from affectline.partner_client import Frame, follow_slot
from crops import CropPool, load_pool

NO_FACE_EVERY = 20  # ~5 % of frames: the viewer looked away (face_present = false, no crop)
_viewer_ids = itertools.count(1)
_pools: dict[int, CropPool] = {}


def pool(size: int = 64) -> CropPool:
    """Face crops of `size` x `size` (the server's CropSpec), made once per size."""
    if size not in _pools:
        _pools[size] = load_pool(size)
    return _pools[size]


@dataclass
class Playback:
    """A viewer watching one video of `video_s` seconds at `fps`; frames come in batches."""

    fps: float
    frames_per_batch: int
    video_s: float
    video_id: str = "loadtest"
    viewer_id: str = ""
    frame_no: int = 0
    crop_size: int = 64  # set from the server's CropSpec once a session has started

    def restart(self) -> None:
        self.viewer_id = f"load-viewer-{next(_viewer_ids)}-{random.randrange(1 << 30)}"
        self.frame_no = 0

    @property
    def finished(self) -> bool:
        return self.frame_no / self.fps >= self.video_s

    def next_frames(self) -> list[Frame]:
        p = pool(self.crop_size)
        start = self.frame_no
        self.frame_no += self.frames_per_batch
        return [
            Frame(
                video_time_ms=int((start + i) * 1000 / self.fps),
                crop=None if (start + i) % NO_FACE_EVERY == NO_FACE_EVERY - 1 else crop,
            )
            for i, crop in enumerate(p.take(start + hash(self.viewer_id), self.frames_per_batch))
        ]


@dataclass
class SendClock:
    """When a viewer's next batch goes out: one per period, moved towards the slot the server's
    answers name (send pacing, as the browser client does). Locust's wait_time asks it."""

    period_s: float
    next_at: float = 0.0

    def started(self, first_batch_in_ms: int | None) -> bool:
        """After StartSession; True when the server named a slot (the first batch waits for it)."""
        if first_batch_in_ms is None:
            return False
        self.next_at = time.monotonic() + first_batch_in_ms / 1000
        return True

    def sending(self) -> None:
        now = time.monotonic()
        self.next_at = (self.next_at if self.next_at > now - self.period_s else now) + self.period_s

    def acked(self, next_batch_in_ms: int | None) -> None:
        if next_batch_in_ms is not None:
            self.next_at = follow_slot(self.next_at, time.monotonic() + next_batch_in_ms / 1000, self.period_s)

    def wait(self) -> float:
        return max(0.0, self.next_at - time.monotonic())


def hint(message, field: str) -> int | None:
    return getattr(message, field) if message.HasField(field) else None


def before_end(playback: Playback) -> None:
    """At the end of a run every user stops at once. Letting the last in-flight batches land and
    spreading the EndSessions (each computes a summary in SQL) keeps that artificial burst out of
    the PushCrops tail latency."""
    gevent.sleep(random.uniform(0.3, 0.3 + playback.frames_per_batch / playback.fps))


def shielded(push: Callable[[], None]) -> None:
    """Runs one batch push in its own greenlet and lets it finish even when Locust stops the user
    mid-call, so every batch the server stores is also counted as acknowledged."""
    g = gevent.spawn(push)
    try:
        g.get()
    except gevent.GreenletExit:
        g.join()
        raise

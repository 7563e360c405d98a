"""What every viewer-like user shares: its place in the video, crop frames, send pacing and the
session loop (ViewerFlow), whatever transport carries it."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import tally
from affectline.partner_client import ClientSession, Frame, follow_slot, start_request
from affectline.v1 import session_pb2
from crops import CropPool, load_pool
from cryptography.hazmat.primitives.asymmetric import ec

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


def count_ack(ack: session_pb2.PushCropsResponse, session_id: str) -> None:
    if ack.duplicate:
        tally.COUNTS["duplicate_acks"] += 1
    else:
        tally.COUNTS["frames_acked"] += len(ack.results)
        tally.COUNTS["batches_acked"] += 1
        tally.ACKED_SESSIONS.add(session_id)


class ViewerFlow:
    """A viewer's session loop, the same on every transport: StartSession (ECDH), one encrypted
    batch per frames_per_batch / fps seconds in the server's send slot, EndSession when the video
    ends, then the next video. A Locust User mixes it in, calls `setup_viewer` in __init__,
    `viewer_step` from its task and `stop_viewer` from on_stop, and supplies the three calls over
    its transport; each returns None (or False) when the call failed, which it has already
    reported to Locust."""

    playback: Playback
    clock: SendClock
    session: ClientSession | None
    paced_start: bool

    def call_start(self, request: session_pb2.StartSessionRequest) -> session_pb2.StartSessionResponse | None:
        raise NotImplementedError

    def call_push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse | None:
        raise NotImplementedError

    def call_end(self, request: session_pb2.EndSessionRequest) -> bool:
        raise NotImplementedError

    def setup_viewer(self, options: Any) -> None:
        self.playback = Playback(options.fps, options.frames_per_batch, options.video_seconds, options.video_id)
        self.clock = SendClock(self.playback.frames_per_batch / self.playback.fps)
        self.session = None
        self.paced_start = False  # the server named a slot for the first batch of this session

    def wait_time(self) -> float:  # one batch per frames_per_batch / fps seconds, in the server's slot
        return self.clock.wait()

    def viewer_step(self) -> None:
        if self.session is None:
            self.session = self._open()
            if self.session is None or self.paced_start:
                return  # the first batch goes out in the server's slot, after wait_time
        session = self.session
        shielded(lambda: self._push(session))
        if self.playback.finished:
            self.end_session()

    def stop_viewer(self) -> None:
        if self.session is not None:
            before_end(self.playback)
        self.end_session()

    def end_session(self) -> None:
        if self.session is not None:
            if self.call_end(self.session.end_request()):
                tally.COUNTS["sessions_ended"] += 1
            self.session = None

    def _open(self) -> ClientSession | None:
        self.playback.restart()
        key = ec.generate_private_key(ec.SECP256R1())
        response = self.call_start(start_request(
            key, video_id=self.playback.video_id, viewer_id=self.playback.viewer_id,
            capture_fps=self.playback.fps, frames_per_batch=self.playback.frames_per_batch))
        if response is None:
            return None  # retried next task
        tally.COUNTS["sessions_started"] += 1
        tally.RECENT_SESSIONS.append(response.session_id)
        self.playback.crop_size = response.crop_spec.width or self.playback.crop_size
        self.paced_start = self.clock.started(hint(response, "first_batch_in_ms"))
        return ClientSession.open(key, response)

    def _push(self, session: ClientSession) -> None:
        frames = self.playback.next_frames()
        self.clock.sending()
        ack = self.call_push(session.push_request(frames, achieved_fps=self.playback.fps))
        if ack is None:
            self.session = None  # a failed batch leaves a seq gap; start over with a new session
            return
        self.clock.acked(hint(ack, "next_batch_in_ms"))
        count_ack(ack, session.session_id)

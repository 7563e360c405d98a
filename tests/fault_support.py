"""Helpers of the fault and replica tests: sessions that keep sending through failures, and the
ledger that compares what was sent, acked and stored."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec


from affectline.partner_client import CallFailed, ClientSession, Frame, ResumableSender, start_request
from affectline.storage.timeline_store import open_store

FRAME_MS = 33


def retry_call(call: Callable[[], object], deadline_s: float = 60.0) -> object:
    """Calls until it succeeds or fails with a non-retryable status (or the deadline passes)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except CallFailed as exc:
            if not exc.retryable or time.monotonic() > deadline:
                raise
            time.sleep(exc.retry_after_s or 0.2)


class SessionRunner(threading.Thread):
    """One viewer: starts a session, sends batches of `frames_per_batch` frames every `interval_s`
    until `stop` is set (or `batches` were sent), through a ResumableSender (the same seq, nonce and
    ciphertext until acked), then ends the session. When the sender gives up on a batch (still failing
    after `max_wait_s`), the runner waits and `resume()`s: the pending batches are re-sent as they were."""

    def __init__(self, sessions: object, *, name: str, crop: np.ndarray, stop: threading.Event | None = None,
                 batches: int | None = None, frames_per_batch: int = 10, interval_s: float = 0.333,
                 max_wait_s: float = 60.0, give_up_after_s: float = 120.0, start_delay_s: float = 0.0) -> None:
        super().__init__(name=name, daemon=True)
        self.sessions = sessions
        self.crop = crop
        self.stop = stop or threading.Event()
        self.batches = batches
        self.frames_per_batch = frames_per_batch
        self.interval_s = interval_s
        self.max_wait_s = max_wait_s
        self.give_up_after_s = give_up_after_s
        self.start_delay_s = start_delay_s
        self.client: ClientSession | None = None
        self.sender: ResumableSender | None = None
        self.latencies: list[float] = []  # seconds per acked batch, retries included
        self.ack_times: list[float] = []  # time.monotonic() of each ack
        self.resumes = 0
        self.frames_sent = 0
        self.summary_frames: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            time.sleep(self.start_delay_s)
            key = ec.generate_private_key(ec.SECP256R1())
            started = retry_call(lambda: self.sessions.start(start_request(
                key, video_id="fault-video", viewer_id=self.name, frames_per_batch=self.frames_per_batch)))
            self.client = ClientSession.open(key, started)
            self.sender = ResumableSender(self.client, self.sessions.push, max_wait_s=self.max_wait_s)
            next_at = time.monotonic()
            b = 0
            while not self.stop.is_set() and (self.batches is None or b < self.batches):
                frames = [Frame(video_time_ms=(b * self.frames_per_batch + i) * FRAME_MS, crop=self.crop)
                          for i in range(self.frames_per_batch)]
                self.frames_sent += len(frames)
                began = time.perf_counter()
                try:
                    self.sender.send(frames)
                except CallFailed as exc:
                    if not exc.retryable:
                        raise
                    self._resume()
                self.latencies.append(time.perf_counter() - began)
                self.ack_times.append(time.monotonic())
                b += 1
                next_at += self.interval_s
                time.sleep(max(0.0, next_at - time.monotonic()))
            self._resume()
            ended = retry_call(lambda: self.sessions.end(self.client.end_request()))
            self.summary_frames = ended.summary.frames_total
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _resume(self) -> None:
        deadline = time.monotonic() + self.give_up_after_s
        while self.sender.pending:
            try:
                self.sender.resume()
            except CallFailed as exc:
                if not exc.retryable or time.monotonic() > deadline:
                    raise
                self.resumes += 1
                time.sleep(0.5)

    @property
    def session_id(self) -> str:
        assert self.client is not None, self.error
        return self.client.session_id

    @property
    def frames_acked(self) -> int:
        return self.sender.frames_acked if self.sender else 0

    @property
    def duplicate_acks(self) -> int:
        return sum(r.duplicate for r in self.sender.acked.values()) if self.sender else 0


def stored_frames(database_url: str, session_ids: Iterable[str]) -> dict[str, list[tuple[int, int, int]]]:
    """(seq, frame index, video_time_ms) of every stored frame, per session, read from the database."""
    with open_store(database_url) as store:
        return {sid: [(f.seq, f.index, f.video_time_ms) for f in store.session_frames(sid)] for sid in session_ids}


@dataclass
class Tally:
    sent: int = 0
    acked: int = 0
    stored: int = 0
    duplicated: int = 0
    missing_acked: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def line(self, name: str) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.notes.items())
        return (f"[{name}] frames sent {self.sent}, acked {self.acked}, stored {self.stored}, duplicated "
                f"{self.duplicated}, acked but missing {self.missing_acked}{extra}")


def tally(runners: list[SessionRunner], database_url: str) -> Tally:
    """Counts frames sent, acked, stored and duplicated (a video time stored twice in one
    session's timeline); `missing_acked`: acked frames the timeline lacks."""
    stored = stored_frames(database_url, [r.session_id for r in runners])
    t = Tally()
    for r in runners:
        frames = stored[r.session_id]
        t.sent += r.frames_sent
        t.acked += r.frames_acked
        t.stored += len(frames)
        t.duplicated += sum(n - 1 for n in Counter(video_ms for _, _, video_ms in frames).values())
        t.duplicated += sum(n - 1 for n in Counter((seq, i) for seq, i, _ in frames).values())
        acked_times = {res.video_time_ms for ack in r.sender.acked.values() for res in ack.results}
        t.missing_acked += len(acked_times - {video_ms for _, _, video_ms in frames})
    return t


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def check_runners(runners: list[SessionRunner]) -> None:
    for r in runners:
        assert r.error is None, f"{r.name}: {r.error!r}"
        assert not r.sender.pending, f"{r.name}: {len(r.sender.pending)} batches never acked"

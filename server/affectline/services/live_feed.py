"""The live feed's memory: per-second counters of what is being watched, fed after each
stored batch (and, with AFFECTLINE_REDIS_URL, with other replicas' counters: live_stream.py)
and read by WatchLive. O(frames) additions per batch, no database reads.

Only aggregates leave it: counts, rates and per-second means, with the emotion mix of a
second withheld when fewer than `min_viewers` distinct viewers are behind it (the floor the
analytics use). Time is the server's: a batch counts in the second it is stored. Used from
the event loop only, so it takes no locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from affectline.storage.records import EMOTIONS, FrameRecord, SessionRecord
from affectline.v1 import session_pb2

N = len(EMOTIONS)


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """One stored batch as the feed keeps it: counts and sums, no frame. `session` and `viewer`
    are the ids as the feed names them (pseudonyms where the counts leave the process)."""

    session: str
    video_id: str
    variant_id: str
    viewer: str
    frames: int
    frames_with_face: int
    sums: tuple[float, ...]
    counts: tuple[int, ...]  # per emotion; > 0: the viewer is behind that emotion's mean


def count_batch(session: SessionRecord, frames: Sequence[FrameRecord],
                name: Callable[[str], str] | None = None) -> BatchCounts:
    """O(frames): the sums and counts of the probabilities the viewer allowed (opt-outs skipped)."""
    allowed = session.consent.allowed_emotions  # the viewer's opt-outs: () allows all seven
    indices = range(N) if not allowed else [EMOTIONS.index(e) for e in allowed]
    sums = [0.0] * N
    counts = [0] * N
    with_face = 0
    for frame in frames:
        if not frame.face_present or frame.probs is None:
            continue
        with_face += 1
        for i in indices:
            p = frame.probs[i]
            if p is None or math.isnan(p):
                continue
            sums[i] += p
            counts[i] += 1
    name = name or _same
    return BatchCounts(name(session.session_id), session.video_id, session.variant_id,
                       name(session.viewer.viewer_id), len(frames), with_face, tuple(sums), tuple(counts))


def _same(value: str) -> str:
    return value


@dataclass(slots=True)
class SecondCounts:
    """One video's counters for one wall-clock second."""

    frames: int = 0
    frames_with_face: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0] * N)
    counts: list[int] = field(default_factory=lambda: [0] * N)
    # Per emotion, the viewers behind its mean: a viewer who opted an emotion out (its value
    # absent) does not count towards that emotion's floor. Sets, so a viewer counts once
    # however many sessions, batches or replicas its frames come from.
    viewers: list[set[str]] = field(default_factory=lambda: [set() for _ in range(N)])
    face_viewers: set[str] = field(default_factory=set)  # the union of `viewers`

    def add(self, batch: BatchCounts) -> None:
        self.frames += batch.frames
        self.frames_with_face += batch.frames_with_face
        behind = False
        for i, c in enumerate(batch.counts):
            if c:
                self.sums[i] += batch.sums[i]
                self.counts[i] += c
                self.viewers[i].add(batch.viewer)
                behind = True
        if behind:
            self.face_viewers.add(batch.viewer)

    def merge(self, other: SecondCounts) -> None:
        self.frames += other.frames
        self.frames_with_face += other.frames_with_face
        for i in range(N):
            self.sums[i] += other.sums[i]
            self.counts[i] += other.counts[i]
            self.viewers[i] |= other.viewers[i]
        self.face_viewers |= other.face_viewers


@dataclass(slots=True)
class FeedDelta:
    """What a feed gained since some moment: sessions with a batch, sessions ended, and each
    (video, second)'s counters. One replica's delta is what it tells the others (live_stream.py)."""

    active: dict[str, tuple[str, str]] = field(default_factory=dict)  # session -> (video, variant)
    ended: set[str] = field(default_factory=set)
    seconds: dict[tuple[str, int], SecondCounts] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.active or self.ended or self.seconds)

    def add(self, batch: BatchCounts, second: int) -> None:
        self.active[batch.session] = (batch.video_id, batch.variant_id)
        counts = self.seconds.get((batch.video_id, second))
        if counts is None:
            counts = self.seconds[(batch.video_id, second)] = SecondCounts()
        counts.add(batch)

    def end(self, session: str) -> None:
        self.active.pop(session, None)
        self.ended.add(session)


@dataclass(slots=True)
class _Active:
    video_id: str
    variant_id: str
    last_seen: float


@dataclass(frozen=True, slots=True)
class SecondMix:
    start_s: int
    viewers: int
    frames: int
    frames_with_face: int
    mean: tuple[float, ...] | None  # None: suppressed (or no face frames)


@dataclass(frozen=True, slots=True)
class VideoLive:
    video_id: str
    active_sessions: int
    variants: tuple[tuple[str, int], ...]
    frames_per_second: float
    seconds: tuple[SecondMix, ...]


@dataclass(frozen=True, slots=True)
class LiveView:
    at: float
    active_sessions: int
    frames_per_second: float
    videos: tuple[VideoLive, ...]
    window_s: int
    min_viewers: int


class LiveFeed:
    def __init__(self, *, window_s: int = 5, idle_s: float = 30.0, min_viewers: int = 5,
                 clock: Callable[[], float] = time.time, pseudonym: Callable[[str], str] | None = None) -> None:
        if window_s < 1 or min_viewers < 1:
            raise ValueError("window_s and min_viewers must be at least 1")
        self.window_s = window_s
        self.min_viewers = min_viewers
        self._idle_s = idle_s
        self._clock = clock
        # How session and viewer ids are named here: as given, or (with other replicas' counts
        # merged in) a keyed pseudonym every replica computes alike, so a viewer counts once.
        self.name: Callable[[str], str] = pseudonym or _same
        self._sessions: dict[str, _Active] = {}
        self._seconds: dict[str, dict[int, SecondCounts]] = {}  # video -> wall second -> counters
        self._pruned_at = 0  # the wall second of the last prune

    # --- fed by the session service (SessionEvents) ----------------------------------------

    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None:
        self.add(count_batch(session, frames, self.name))

    def session_ended(self, summary: session_pb2.SessionSummary) -> None:
        self.end(self.name(summary.session_id))

    def add(self, batch: BatchCounts) -> int:
        """Counts a batch stored now; returns the wall second it counts in."""
        now = self._clock()
        key = int(now)
        if key != self._pruned_at:  # memory stays bounded even when no one watches the feed
            self._prune(now)
        self._sessions[batch.session] = _Active(batch.video_id, batch.variant_id, now)
        seconds = self._seconds.setdefault(batch.video_id, {})
        bucket = seconds.get(key)
        if bucket is None:
            bucket = seconds[key] = SecondCounts()
        bucket.add(batch)
        return key

    def end(self, session: str) -> None:
        self._sessions.pop(session, None)

    # --- fed by other replicas (live_stream.py) ------------------------------------------

    def merge(self, delta: FeedDelta, at: float) -> None:
        """Adds another replica's delta, published at `at` (its clock). Its seconds keep their
        own numbers, so a batch counts in the same second on every replica; seconds already
        out of the window are skipped."""
        now = self._clock()
        if int(now) != self._pruned_at:
            self._prune(now)
        seen = min(at, now)  # a clock ahead of ours must not keep a session active longer
        for session, (video_id, variant_id) in delta.active.items():
            self._sessions[session] = _Active(video_id, variant_id, seen)
        for session in delta.ended:
            self._sessions.pop(session, None)
        first = int(now) - self.window_s
        for (video_id, second), counts in delta.seconds.items():
            if second < first:
                continue
            seconds = self._seconds.setdefault(video_id, {})
            bucket = seconds.get(second)
            if bucket is None:
                seconds[second] = counts
            else:
                bucket.merge(counts)

    # --- read by WatchLive ---------------------------------------------------------------

    def snapshot(self, video_ids: Collection[str] = ()) -> LiveView:
        """Totals over every video; per-video entries for `video_ids` (empty: all)."""
        now = self._clock()
        self._prune(now)
        current = int(now)
        per_video: dict[str, dict[str, int]] = {}
        for active in self._sessions.values():
            variants = per_video.setdefault(active.video_id, {})
            variants[active.variant_id] = variants.get(active.variant_id, 0) + 1
        total_frames = 0
        videos = []
        for video_id in sorted(set(per_video) | set(self._seconds)):
            seconds = self._seconds.get(video_id, {})
            window = sorted((s, b) for s, b in seconds.items() if s < current)
            frames = sum(b.frames for _, b in window)
            total_frames += frames
            variants = per_video.get(video_id, {})
            if (video_ids and video_id not in video_ids) or not (variants or window):
                continue
            videos.append(VideoLive(
                video_id=video_id,
                active_sessions=sum(variants.values()),
                variants=tuple(sorted(variants.items())),
                frames_per_second=frames / self.window_s,
                seconds=tuple(self._mix(s, b) for s, b in window),
            ))
        return LiveView(now, len(self._sessions), total_frames / self.window_s, tuple(videos),
                        self.window_s, self.min_viewers)

    def _mix(self, start_s: int, bucket: SecondCounts) -> SecondMix:
        shown = bucket.frames_with_face > 0 and min(len(v) for v in bucket.viewers) >= self.min_viewers
        mean = tuple(s / c for s, c in zip(bucket.sums, bucket.counts)) if shown else None
        return SecondMix(start_s, len(bucket.face_viewers), bucket.frames, bucket.frames_with_face, mean)

    def _prune(self, now: float) -> None:
        """Drops idle sessions and the seconds before the window: O(sessions + videos), once a
        second at most from ingestion."""
        self._pruned_at = int(now)
        idle_before = now - self._idle_s
        for sid in [sid for sid, a in self._sessions.items() if a.last_seen < idle_before]:
            del self._sessions[sid]
        first = int(now) - self.window_s  # the window: complete seconds [first, now)
        for video_id, seconds in list(self._seconds.items()):
            for s in [s for s in seconds if s < first]:
                del seconds[s]
            if not seconds:
                del self._seconds[video_id]

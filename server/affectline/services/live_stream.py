"""The live feed across replicas (AFFECTLINE_REDIS_URL): every replica's WatchLive sees every
replica's sessions through one Redis Stream.

Each replica counts its own batches in its own LiveFeed at once, as with no Redis, and gathers
what it counted into a FeedDelta; every FLUSH_S it appends that delta, if any, to the stream as
one message (XADD with an approximate MAXLEN bound). Every replica reads the whole stream with
its own cursor (XREAD: a consumer group would hand each message to one replica, and each needs
all of them) and merges the messages of the others (skipping its own origin id, so nothing
counts twice). A replica that starts reads the last window's messages first, so its feed is
complete at once.

A message holds aggregates only: per (video, wall second) frame counts and the sums and counts
of the seven probabilities, the viewers behind each emotion's mean and the active sessions as
keyed pseudonyms (HMAC-SHA256 under a key derived from AFFECTLINE_KEK, which replicas share), so
the distinct-viewer floor holds across replicas without a viewer or session id leaving the
process. No crop, no frame, no per-frame value.

Redis unreachable: the replica's feed keeps its own sessions (per pod, as with no Redis); a
delta that cannot be published is dropped and counted, the reader retries with a backoff and
resumes from its cursor. Nothing here fails ingestion or WatchLive.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from affectline.metrics import Metrics
from affectline.redis_shared import READ_BLOCK_S
from affectline.services.live_feed import N, FeedDelta, LiveFeed, SecondCounts, count_batch
from affectline.storage.records import FrameRecord, SessionRecord
from affectline.v1 import session_pb2

log = logging.getLogger(__name__)

# How often a replica publishes what it counted: the delay before other replicas see a new
# session (WatchLive's shortest interval is 250 ms) and at most 4 messages/s per busy replica,
# however many sessions it holds.
FLUSH_S = 0.25
READ_COUNT = 500  # messages per XREAD
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
_PSEUDONYM_CONTEXT = b"affectline live-feed pseudonyms v1"


def pseudonyms(kek: bytes) -> Callable[[str], str]:
    """id -> 16 URL-safe chars (96 bits of HMAC-SHA256): the same on every replica sharing the
    KEK, and not reversible without it (viewer ids may be guessable, like "viewer-42")."""
    key = hmac.new(kek, _PSEUDONYM_CONTEXT, hashlib.sha256).digest()

    def name(value: str) -> str:
        digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:12]).decode("ascii")

    return name


# --- the message ---------------------------------------------------------------------------------

def encode(delta: FeedDelta, at: float) -> bytes:
    """Compact JSON: {"t": at, "a": [[session, video, variant]], "e": [session],
    "s": [[video, second, frames, frames_with_face, [sums], [counts], [[viewer, emotion bitmask]]]]}."""
    seconds = []
    for (video_id, second), c in delta.seconds.items():
        masks: dict[str, int] = {}
        for i, viewers in enumerate(c.viewers):
            for v in viewers:
                masks[v] = masks.get(v, 0) | (1 << i)
        seconds.append([video_id, second, c.frames, c.frames_with_face, [round(x, 6) for x in c.sums], c.counts,
                        sorted(masks.items())])
    body = {"t": round(at, 3), "a": [[s, v, k] for s, (v, k) in delta.active.items()], "e": sorted(delta.ended),
            "s": seconds}
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[float, FeedDelta]:
    """ValueError, KeyError or TypeError for anything but what `encode` writes."""
    body = json.loads(data)
    delta = FeedDelta()
    for session, video_id, variant_id in body["a"]:
        delta.active[str(session)] = (str(video_id), str(variant_id))
    delta.ended.update(str(s) for s in body["e"])
    for video_id, second, frames, with_face, sums, counts, viewers in body["s"]:
        if len(sums) != N or len(counts) != N:
            raise ValueError("a second needs one sum and one count per emotion")
        c = SecondCounts(int(frames), int(with_face), [float(x) for x in sums], [int(x) for x in counts])
        for viewer, mask in viewers:
            viewer = str(viewer)
            for i in range(N):
                if int(mask) >> i & 1:
                    c.viewers[i].add(viewer)
            if mask:
                c.face_viewers.add(viewer)
        delta.seconds[(str(video_id), int(second))] = c
    return float(body["t"]), delta


# --- the replica's side ---------------------------------------------------------------------------

class LiveStream:
    """A SessionEvents listener in the live feed's place: counts each batch in the feed, publishes
    the counts, and merges the other replicas' counts into the feed."""

    def __init__(self, feed: LiveFeed, commands: Redis, reader: Redis, stream_key: str, *, maxlen: int,
                 metrics: Metrics, flush_s: float = FLUSH_S, block_s: float = READ_BLOCK_S,
                 clock: Callable[[], float] = time.time, origin: str | None = None) -> None:
        self.feed = feed
        self.origin = origin or os.urandom(8).hex()  # this process, whatever its host name
        self._origin_b = self.origin.encode()
        self._commands = commands
        self._reader = reader
        self._key = stream_key
        self._maxlen = maxlen
        self._flush_s = flush_s
        self._block_ms = max(1, round(block_s * 1000))
        self._clock = clock
        self._pending = FeedDelta()
        messages = metrics.live_stream_messages
        self._published = messages.labels(direction="published")
        self._consumed = messages.labels(direction="consumed")
        self._dropped = messages.labels(direction="dropped")
        self._lag = metrics.live_stream_lag
        self._errors = metrics.redis_errors.labels(use="live_stream")
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._failing = False

    # --- SessionEvents ---------------------------------------------------------------------

    def batch_stored(self, session: SessionRecord, frames: Sequence[FrameRecord]) -> None:
        batch = count_batch(session, frames, self.feed.name)
        second = self.feed.add(batch)
        self._pending.add(batch, second)

    def session_ended(self, summary: session_pb2.SessionSummary) -> None:
        session = self.feed.name(summary.session_id)
        self.feed.end(session)
        self._pending.end(session)

    # --- background ------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._publish_loop(), name="affectline-live-publish"),
                       asyncio.create_task(self._read_loop(), name="affectline-live-read")]

    async def stop(self) -> None:
        """Ends both loops, then publishes what is left (sessions ended while draining). The loops
        end on a flag, within one XREAD block: redis-py's asyncio client can swallow a task's
        cancellation in the middle of a command (redis 8.1.0: 2 to 5 of 15 cancels within 20 ms
        of a command's start were lost), so cancelling is only the last resort."""
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self._block_ms / 1000 + 1.0)
            for task in late:
                task.cancel()
        self._tasks = []
        await self.flush()

    async def flush(self) -> bool:
        """Publishes what was counted since the last flush; False when nothing was published."""
        if not self._pending:
            return False
        delta, self._pending = self._pending, FeedDelta()
        data = encode(delta, self._clock())
        try:
            await self._commands.xadd(self._key, {"o": self._origin_b, "d": data}, maxlen=self._maxlen,
                                      approximate=True)
        except _FAILURES as exc:
            self._dropped.inc()
            self._failed("publish", exc)
            return False
        self._published.inc()
        self._recovered()
        return True

    async def _publish_loop(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self._flush_s)
            try:
                await self.flush()
            except Exception:  # a bug here must not end the loop (and let the pending delta grow)
                log.exception("live stream: publishing failed")

    async def _pause(self, seconds: float) -> None:
        """Sleeps, or less when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _read_loop(self) -> None:
        # From the start of the window: a replica that (re)starts fills its feed at once.
        cursor = f"{max(0, int((self._clock() - self.feed.window_s - 1) * 1000))}-0"
        backoff = 0.25
        while not self._stopping.is_set():
            try:
                reply = await self._reader.xread({self._key: cursor}, count=READ_COUNT, block=self._block_ms)
            except _FAILURES as exc:
                self._failed("read", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.25
            self._recovered()
            # RESP2 answers [[stream, entries]], RESP3 (protocol=3 in the URL) {stream: entries}.
            for _stream, entries in (reply.items() if isinstance(reply, dict) else reply or ()):
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get(b"o") != self._origin_b:
                        try:
                            self._merge(fields)
                        except Exception:  # one message must not end the reader
                            log.exception("live stream: merging a message failed")

    def _merge(self, fields: dict[bytes, bytes]) -> None:
        try:
            at, delta = decode(fields[b"d"])
        except (KeyError, ValueError, TypeError) as exc:  # another version, or not ours: skip it
            log.warning("live stream: skipped a message it cannot read (%s)", type(exc).__name__)
            return
        self._lag.observe(max(0.0, self._clock() - at))
        self._consumed.inc()
        self.feed.merge(delta, at)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._errors.inc()
        if not self._failing:
            self._failing = True
            log.warning("live stream: Redis %s failed (%s: %s); WatchLive shows this replica's sessions only "
                        "until it answers again", what, type(exc).__name__, exc)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("live stream: Redis answers again; WatchLive shows every replica's sessions again")

"""Shared live state across replicas (AFFECTLINE_REDIS_URL) on a real Redis.

What is proven: replicas' live feeds merge through the Redis Stream with every batch counted
once and the distinct-viewer floor held across replicas (a viewer on two replicas counts once);
the per-API-key limit holds in total across limiters (not N x); with Redis unreachable the key
limit falls back to the replica's own bucket and the feed to its own sessions, without an error
reaching a caller. Then 3 `affectline serve` processes, each with its own SQLite file, one Redis
and one key prefix: sessions pushed to replicas 1 and 2 show in WatchLive on replica 3 with
their emotion mix, an API key gets its burst once across the three, and a 4th replica whose
Redis dies (a redis-server of the test's own, killed; without one, a port nothing listens on)
keeps answering. Every test uses its own key prefix and deletes its keys. Skipped,
with the reason, when no Redis answers at AFFECTLINE_TEST_REDIS_URL (default 127.0.0.1:6379).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import redis

from affectline.metrics import Metrics
from affectline.rate_limit import RateLimiter
from affectline.redis_rate_limit import RETRY_S, SharedRateLimiter
from affectline.redis_shared import RedisShared, redact
from affectline.serve_process import ServeProcess, free_port, start_serve
from affectline.services.live_feed import FeedDelta, LiveFeed, count_batch
from affectline.services.live_stream import LiveStream, decode, encode, pseudonyms
from affectline.storage.records import EMOTIONS, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo
from affectline.v1 import live_pb2, live_pb2_grpc, session_pb2
from api_client import BearerAuth, GrpcPartner, bearer, frames_of

REDIS_URL = os.environ.get("AFFECTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
P = (0.1, 0.0, 0.0, 0.6, 0.1, 0.1, 0.1)


def _redis_missing() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except (redis.RedisError, OSError) as exc:
        return f"no Redis at {REDIS_URL} ({type(exc).__name__}); set AFFECTLINE_TEST_REDIS_URL or start redis-server"
    return None


_MISSING = _redis_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


@pytest.fixture
def prefix():
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"affectline-test:{secrets.token_hex(6)}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def session(sid: str, viewer: str, video: str = "v") -> SessionRecord:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return SessionRecord(sid, video, "", ViewerInfo(viewer), ConsentInfo("n", t, ("emotion",), ()), 30.0,
                         "m", t, t, b"", b"")


def face() -> FrameRecord:
    return FrameRecord(seq=0, index=0, video_time_ms=0, captured_at=None, face_present=True,
                       probs=P)  # type: ignore[arg-type]


# --- the stream and the limiter, in process --------------------------------------------------------------------


class Replica:
    """One replica's live side: a feed and its stream, on clients of its own."""

    def __init__(self, prefix: str, clock: Clock, name, url: str = REDIS_URL, min_viewers: int = 5) -> None:
        self.redis = RedisShared.connect(url, prefix)
        self.metrics = Metrics.create()
        self.feed = LiveFeed(window_s=5, idle_s=30, min_viewers=min_viewers, clock=clock, pseudonym=name)
        self.stream = LiveStream(self.feed, self.redis.commands, self.redis.reader, self.redis.key("live"),
                                 maxlen=1000, metrics=self.metrics, block_s=0.1, clock=clock)

    async def close(self) -> None:
        await self.stream.stop()
        await self.redis.close()

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def until(predicate, timeout_s: float = 5.0) -> float:
    """Seconds until `predicate()` held; fails after timeout_s."""
    started = time.perf_counter()
    while not predicate():
        assert time.perf_counter() - started < timeout_s, "not seen in time"
        await asyncio.sleep(0.002)
    return time.perf_counter() - started


async def test_replicas_feeds_merge_through_the_stream_each_batch_counted_once(prefix):
    clock = Clock(float(int(time.time())) + 0.1)
    name = pseudonyms(os.urandom(32))
    a, b = Replica(prefix, clock, name), Replica(prefix, clock, name)
    await a.stream.start()
    await b.stream.start()
    try:
        for i in range(3):  # viewers 0-2 on replica a; 3 on b, and viewer 0 again (a second session)
            a.stream.batch_stored(session(f"a{i}", f"viewer{i}"), [face(), face()])
        b.stream.batch_stored(session("b3", "viewer3"), [face(), face()])
        b.stream.batch_stored(session("b0", "viewer0"), [face(), face()])
        assert await a.stream.flush() and await b.stream.flush()
        latency = await until(lambda: a.feed.snapshot().active_sessions == 5 and b.feed.snapshot().active_sessions == 5)
        clock.t += 1  # the second is complete
        for feed in (a.feed, b.feed):
            (video,) = feed.snapshot().videos
            (second,) = video.seconds
            # 10 frames, each counted once on each replica; 4 distinct viewers: below the floor of 5.
            assert (video.active_sessions, second.frames, second.viewers, second.mean) == (5, 10, 4, None)
        # A fifth viewer on b lifts both replicas' mix over the floor in the same second.
        clock.t -= 1
        b.stream.batch_stored(session("b4", "viewer4"), [face()])
        await b.stream.flush()
        await until(lambda: a.feed.snapshot().active_sessions == 6)
        clock.t += 1
        for feed in (a.feed, b.feed):
            (second,) = feed.snapshot().videos[0].seconds
            assert (second.frames, second.viewers) == (11, 5) and second.mean == pytest.approx(P)
        # An ended session leaves the other replica's feed too.
        a.stream.session_ended(session_pb2.SessionSummary(session_id="a1"))
        await a.stream.flush()
        await until(lambda: b.feed.snapshot().active_sessions == 5)
        assert a.count("affectline_live_stream_messages_total", direction="published") == 2
        assert b.count("affectline_live_stream_messages_total", direction="consumed") == 2
        assert b.count("affectline_live_stream_lag_seconds_count") == 2
        # Only aggregates and pseudonyms travel: no viewer or session id, no probability per frame.
        entries = redis.Redis.from_url(REDIS_URL).xrange(prefix + "live")
        raw = b"".join(v for _, fields in entries for v in fields.values())
        assert b"viewer" not in raw and b'"a0"' not in raw and b'"b3"' not in raw
        sizes = [len(fields[b"d"]) for _, fields in entries]
        print(f"\nfan-out in process: feed updated {latency * 1000:.1f} ms after the flush; "
              f"messages {sizes} bytes")
    finally:
        await a.close()
        await b.close()


async def test_a_starting_replica_reads_the_current_window_and_skips_what_is_malformed(prefix):
    clock = Clock(time.time())
    name = pseudonyms(b"k" * 32)
    first = Replica(prefix, clock, name, min_viewers=1)
    first.stream.batch_stored(session("s", "v"), [face()])
    await first.stream.flush()
    redis.Redis.from_url(REDIS_URL).xadd(prefix + "live", {"o": b"other", "d": b"{not json"})
    late = Replica(prefix, clock, name, min_viewers=1)
    await late.stream.start()
    try:
        await until(lambda: late.feed.snapshot().active_sessions == 1)
        assert late.count("affectline_live_stream_messages_total", direction="consumed") == 1
    finally:
        await first.close()
        await late.close()


def test_a_message_carries_each_viewer_behind_the_emotions_it_allowed():
    delta = FeedDelta()
    opted_out = session("s2", "w")
    opted_out = replace(opted_out, consent=replace(opted_out.consent, allowed_emotions=("happy", "sad")))
    delta.add(count_batch(session("s1", "v"), [face(), face()]), 7)
    delta.add(count_batch(opted_out, [face()]), 7)
    delta.end("s0")
    at, back = decode(encode(delta, 12.5))
    assert (at, back.active, back.ended) == (12.5, delta.active, {"s0"})
    (second,) = back.seconds.values()
    original = delta.seconds[("v", 7)]
    assert (second.frames, second.frames_with_face, second.counts) == (3, 3, original.counts)
    assert second.sums == pytest.approx(original.sums) and second.viewers == original.viewers
    assert second.viewers[EMOTIONS.index("happy")] == {"v", "w"} and second.viewers[0] == {"v"}


async def test_the_per_key_limit_holds_in_total_across_replicas(prefix):
    shared = [RedisShared.connect(REDIS_URL, prefix) for _ in range(3)]  # three replicas' clients
    clients = [s.commands for s in shared]
    metrics = Metrics.create()
    limiters = [SharedRateLimiter(c, prefix + "ratelimit:", RateLimiter(0.01, 5), errors=metrics.redis_errors)
                for c in clients]
    try:
        answers = [await limiters[i % 3].take("key-1") for i in range(15)]
        granted = [w for w in answers if w is None]
        assert len(granted) == 5 and answers[:5] == [None] * 5  # 5 in total, not 5 per replica
        assert all(90 < w <= 100 for w in answers[5:])  # the wait for one token at 0.01/s
        assert await limiters[1].take("key-2") is None  # another key has its own bucket
        ttl = await clients[0].pttl(prefix + "ratelimit:key-1")
        assert 0 < ttl <= 501_000  # the hash goes once the bucket would be full again
        assert metrics.registry.get_sample_value("affectline_redis_errors_total", {"use": "rate_limit"}) == 0
    finally:
        for s in shared:
            await s.close()
    assert redact("redis://u:secret@h:6379/0") == "redis://u:***@h:6379/0" and redact(REDIS_URL) == REDIS_URL


async def test_with_redis_unreachable_limits_fall_back_per_replica_and_the_feed_keeps_its_own_sessions(prefix):
    url = dead_redis_url()
    shared = RedisShared.connect(url, prefix)
    client = shared.commands
    metrics = Metrics.create()
    now = [0.0]
    limiter = SharedRateLimiter(client, prefix, RateLimiter(0.01, 3), errors=metrics.redis_errors,
                                clock=lambda: now[0])
    answers = [await limiter.take("k") for _ in range(5)]
    assert answers[:3] == [None] * 3 and all(w is not None and w > 0 for w in answers[3:])  # this replica's bucket
    errors = metrics.registry.get_sample_value("affectline_redis_errors_total", {"use": "rate_limit"})
    assert errors == 1  # tried once; then left alone for RETRY_S
    now[0] += RETRY_S + 0.01
    await limiter.take("k")
    assert metrics.registry.get_sample_value("affectline_redis_errors_total", {"use": "rate_limit"}) == 2
    await shared.close()

    clock = Clock(time.time())
    replica = Replica(prefix, clock, pseudonyms(b"k" * 32), url=url, min_viewers=1)
    await replica.stream.start()
    try:
        replica.stream.batch_stored(session("s", "v"), [face()])
        assert replica.feed.snapshot().active_sessions == 1
        assert await replica.stream.flush() is False
        # The reader keeps retrying (with a backoff) instead of giving up.
        await until(lambda: replica.count("affectline_redis_errors_total", use="live_stream") >= 2)
        assert replica.count("affectline_live_stream_messages_total", direction="dropped") == 1
    finally:
        await replica.close()


# --- real server processes ----------------------------------------------------------------------------------------


def _admin_key() -> str:
    return f"afk_{secrets.token_hex(8)}_{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


def _metric(replica: ServeProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{replica.base}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = f"{name}{{{want}}} " if labels else f"{name} "
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


class PrivateRedis:
    """A redis-server of this test's own on a free port, to be killed (never the shared one)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _push_for(target: str, viewers: list[str], seconds: float, crops: list[np.ndarray], stop: threading.Event,
              pushed: list[int]) -> None:
    partner = GrpcPartner(target)
    sessions = [partner.start(video_id="shared-live", viewer_id=v) for v in viewers]
    t, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        for s in sessions:
            partner.sessions.PushCrops(s.push_request(frames_of(crops, start_ms=t)))
            pushed.append(1)
        t += 165
        stop.wait(0.15)
    partner.close()


def _connect_call(replica: ServeProcess, key: str) -> int:
    return httpx.post(f"{replica.base}/affectline.v1.AnalyticsService/GetVideoTimeline", json={"videoId": "none"},
                      headers=bearer(key), timeout=10).status_code


def test_three_replicas_share_the_live_feed_and_the_key_limit_and_survive_losing_redis(prefix, tmp_path, crop_size):
    burst = 8
    key = _admin_key()
    env = {**os.environ, "AFFECTLINE_KEK": os.urandom(32).hex(), "AFFECTLINE_ADMIN_KEY": key,
           "AFFECTLINE_REDIS_URL": REDIS_URL, "AFFECTLINE_REDIS_PREFIX": prefix,
           "AFFECTLINE_RATE_LIMIT_KEY_RPS": "0.001", "AFFECTLINE_RATE_LIMIT_KEY_BURST": str(burst)}
    private = PrivateRedis(tmp_path) if shutil.which("redis-server") else None
    envs = [env, env, env, {**env, "AFFECTLINE_REDIS_URL": private.url if private else dead_redis_url()}]
    replicas: list[ServeProcess | None] = [None] * 4
    failures: list[BaseException] = []

    def start(n: int) -> None:
        try:
            replicas[n] = start_serve(tmp_path / f"r{n + 1}", tmp_path / f"r{n + 1}.log",
                                      ["--time-variants", "0", "--max-run-ms", "0"], env=envs[n])
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    began = time.monotonic()
    threads = [threading.Thread(target=start, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not failures, failures
        r1, r2, r3, r4 = replicas
        assert r1 and r2 and r3 and r4
        up_s = time.monotonic() - began
        rng = np.random.default_rng(5)
        crops = [rng.integers(0, 256, (crop_size, crop_size), dtype=np.uint8) for _ in range(3)]

        # Live: 3 viewers on replica 1, 2 on replica 2, watched on replica 3.
        stop, pushed = threading.Event(), []
        pushers = [threading.Thread(target=_push_for, args=(r.grpc_target, viewers, 8.0, crops, stop, pushed))
                   for r, viewers in ((r1, ["v1", "v2", "v3"]), (r2, ["v4", "v5"]))]
        channel = grpc.intercept_channel(grpc.insecure_channel(r3.grpc_target), BearerAuth(key))
        stream = live_pb2_grpc.LiveServiceStub(channel).WatchLive(
            live_pb2.WatchLiveRequest(video_ids=["shared-live"], interval_ms=250), timeout=30)
        for t in pushers:
            t.start()
        started, seen, mixed = time.monotonic(), None, None
        try:
            for snapshot in stream:
                videos = [v for v in snapshot.videos if v.video_id == "shared-live"]
                if videos and videos[0].active_sessions == 5 and seen is None:
                    seen = time.monotonic() - started
                if videos and any(s.viewers == 5 and s.HasField("mean_scores") for s in videos[0].seconds):
                    mixed = time.monotonic() - started
                    break
        finally:
            stream.cancel()
            stop.set()
            for t in pushers:
                t.join(20)
            channel.close()
        assert seen is not None and mixed is not None, "replica 3 never showed the 5 sessions and their mix"
        assert _metric(r3, "affectline_live_stream_messages_total", direction="consumed") > 0
        assert _metric(r3, "affectline_live_stream_messages_total", direction="published") == 0  # no own sessions
        lag_ms = (1000 * _metric(r3, "affectline_live_stream_lag_seconds_sum")
                  / _metric(r3, "affectline_live_stream_lag_seconds_count"))
        sizes = [len(f[b"o"]) + len(f[b"d"]) for _, f in redis.Redis.from_url(REDIS_URL).xrange(prefix + "live")]

        # The key's burst holds across the three (WatchLive on replica 3 took one token).
        codes = [_connect_call((r1, r2, r3)[i % 3], key) for i in range(3 * burst)]
        assert sum(c != 429 for c in codes) == burst - 1, codes
        assert set(codes) <= {404, 429}, codes

        # Replica 4 loses its Redis: pushes, WatchLive and keyed calls still answer; the key limit is
        # then this replica's own bucket (burst tokens, one taken by WatchLive), never an error.
        assert _connect_call(r4, key) == 404  # through its Redis (the dead-port fallback without redis-server)
        if private is not None:
            private.kill()
        partner = GrpcPartner(r4.grpc_target)
        own = partner.start(video_id="shared-live", viewer_id="v6")
        assert partner.sessions.PushCrops(own.push_request(frames_of(crops))).frames_accepted_total == len(crops)
        channel = grpc.intercept_channel(grpc.insecure_channel(r4.grpc_target), BearerAuth(key))
        stream = live_pb2_grpc.LiveServiceStub(channel).WatchLive(
            live_pb2.WatchLiveRequest(video_ids=["shared-live"], interval_ms=250), timeout=10)
        first = next(stream)
        stream.cancel()
        channel.close()
        partner.close()
        assert [(v.video_id, v.active_sessions) for v in first.videos] == [("shared-live", 1)]
        late = [_connect_call(r4, key) for _ in range(burst + 2)]
        assert sum(c == 404 for c in late) == (burst - 1 if private is not None else burst - 2), late
        assert set(late) == {404, 429}, late
        assert _metric(r4, "affectline_redis_errors_total", use="rate_limit") >= 1
        assert _metric(r4, "affectline_redis_errors_total", use="live_stream") >= 1
        print(f"\n3 replicas + 1 (up in {up_s:.1f} s): sessions of replicas 1-2 in WatchLive on replica 3 "
              f"after {seen:.2f} s, their mix after {mixed:.2f} s; key calls across replicas "
              f"{codes.count(429)} refused of {len(codes)}; "
              f"{len(pushed)} batches -> {len(sizes)} stream messages of {min(sizes)}-{max(sizes)} bytes "
              f"(mean {sum(sizes) / len(sizes):.0f}); mean lag XADD -> merged on replica 3 {lag_ms:.1f} ms")
    finally:
        for r in replicas:
            if r is not None:
                r.stop()
        if private is not None:
            private.kill()

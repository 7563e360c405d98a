"""The live feed: LiveFeed's aggregates on exact examples, WatchLive on native gRPC while
sessions push, a gRPC-web stream that outlives the HTTP read timeout and ends with its client,
and WatchLive in a real Chromium over connect-web's gRPC-web transport."""

from __future__ import annotations

import struct
import threading
import time
from datetime import UTC, datetime
from typing import Self

import grpc
import httpx
import numpy as np
import pytest
from affectline.auth.scopes import ANALYTICS_READ
from affectline.config import Settings
from affectline.services.live_feed import LiveFeed
from affectline.storage.records import (
    EMOTIONS,
    ConsentInfo,
    FrameRecord,
    SessionRecord,
    ViewerInfo,
)
from affectline.v1 import live_pb2, live_pb2_grpc, session_pb2
from api_client import BearerAuth, GrpcPartner, bearer, frames_of
from browser_support import REPO, Browser, missing_prerequisites, write_y4m
from server_harness import running_server

P = (0.1, 0.0, 0.0, 0.6, 0.1, 0.1, 0.1)
Q = (0.3, 0.0, 0.0, 0.2, 0.3, 0.1, 0.1)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def session(sid: str, viewer: str, video: str = "v", variant: str = "", allowed: tuple[str, ...] = ()) -> SessionRecord:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return SessionRecord(sid, video, variant, ViewerInfo(viewer), ConsentInfo("n", t, ("emotion",), allowed), 30.0,
                         "m", t, t, b"", b"")


def face(probs: tuple[float | None, ...] | None) -> FrameRecord:
    return FrameRecord(seq=0, index=0, video_time_ms=0, captured_at=None, face_present=probs is not None,
                       probs=probs)  # type: ignore[arg-type]


# --- LiveFeed on exact examples ------------------------------------------------------------------

def test_feed_counts_sessions_rates_and_the_mean_mix_of_a_second():
    clock = Clock(100.2)
    feed = LiveFeed(window_s=5, idle_s=30, min_viewers=5, clock=clock)
    for i in range(5):  # five viewers; variant b for two of them
        feed.batch_stored(session(f"s{i}", f"viewer{i}", variant="b" if i < 2 else ""),
                          [face(P), face(Q if i == 0 else P), face(None)])
    feed.batch_stored(session("x", "other", video="w"), [face(None)])
    clock.t = 101.1
    view = feed.snapshot()
    assert (view.active_sessions, view.frames_per_second, view.min_viewers) == (6, 16 / 5, 5)
    v = next(v for v in view.videos if v.video_id == "v")
    assert (v.active_sessions, v.variants, v.frames_per_second) == (5, (("", 3), ("b", 2)), 15 / 5)
    (second,) = v.seconds
    assert (second.start_s, second.viewers, second.frames, second.frames_with_face) == (100, 5, 15, 10)
    expected = [(9 * p + q) / 10 for p, q in zip(P, Q)]
    assert second.mean == pytest.approx(expected)
    assert [v.video_id for v in feed.snapshot(["w"]).videos] == ["w"]  # totals stay global
    assert feed.snapshot(["w"]).active_sessions == 6


def test_mix_is_withheld_below_the_viewer_floor_and_per_opted_out_emotion():
    clock = Clock(50.0)
    feed = LiveFeed(window_s=3, min_viewers=5, clock=clock)
    for i in range(4):
        feed.batch_stored(session(f"s{i}", f"viewer{i}"), [face(P)])
    feed.batch_stored(session("s4", "viewer1"), [face(P)])  # a second session of a known viewer
    clock.t = 51.0
    (second,) = feed.snapshot().videos[0].seconds
    assert (second.viewers, second.mean) == (4, None)
    # A fifth viewer who opted "angry" out: the other six emotions have five viewers, angry four.
    feed.batch_stored(session("s5", "viewer5", allowed=EMOTIONS[1:]), [face(P)])
    clock.t = 52.0
    assert feed.snapshot().videos[0].seconds[-1].mean is None
    feed.batch_stored(session("s6", "viewer6"), [face(P)] * 4 + [face(None)])
    for i in range(5):
        feed.batch_stored(session(f"t{i}", f"viewer{i}"), [face(P)])
    clock.t = 53.0
    last = feed.snapshot().videos[0].seconds[-1]
    assert (last.viewers, last.frames_with_face) == (6, 9)
    assert last.mean == pytest.approx(P)


def test_idle_ended_and_old_data_leave_memory():
    clock = Clock(10.0)
    feed = LiveFeed(window_s=2, idle_s=5, min_viewers=1, clock=clock)
    feed.batch_stored(session("a", "va"), [face(P)])
    feed.batch_stored(session("b", "vb"), [face(P)])
    feed.session_ended(session_pb2.SessionSummary(session_id="a"))
    clock.t = 11.5
    view = feed.snapshot()
    assert view.active_sessions == 1 and view.videos[0].seconds[0].mean == pytest.approx(P)
    clock.t = 16.0  # b idle for 6 s > 5; second 10 is out of the 2 s window
    view = feed.snapshot()
    assert (view.active_sessions, view.frames_per_second, view.videos) == (0, 0.0, ())
    assert feed._seconds == {} and feed._sessions == {}
    # Ingestion alone also prunes (no one may be watching the feed).
    feed.batch_stored(session("c", "vc", video="w"), [face(P)])
    clock.t = 30.0
    feed.batch_stored(session("d", "vd", video="x"), [face(P)])
    assert list(feed._sessions) == ["d"] and list(feed._seconds) == ["x"]


# --- a real server -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("live"), live_interval_ms=250, http_read_timeout_s=1.0)
    with running_server(settings) as s:
        yield s


class Pushers:
    """`viewers` sessions of one video pushing a small batch every 100 ms from a thread."""

    def __init__(self, target: str, video_id: str, viewers: int, crop_size: int) -> None:
        self._partner = GrpcPartner(target)
        rng = np.random.default_rng(7)
        self._crops = [rng.integers(0, 256, (crop_size, crop_size), dtype=np.uint8) for _ in range(4)]
        self._sessions = [self._partner.start(video_id=video_id, viewer_id=f"{video_id}-viewer{i}") for i in range(viewers)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.pushed = 0

    def _run(self) -> None:
        t = 0
        while not self._stop.is_set():
            for s in self._sessions:
                self._partner.sessions.PushCrops(s.push_request(frames_of([*self._crops, None], start_ms=t)))
                self.pushed += 1
            t += 165
            self._stop.wait(0.1)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self._sessions:
            self._partner.sessions.EndSession(s.end_request())
        self._partner.close()


def _seen(snapshot: live_pb2.LiveSnapshot, video_id: str, viewers: int) -> bool:
    for v in snapshot.videos:
        if v.video_id == video_id and v.active_sessions == viewers and v.frames_per_second > 0:
            return any(s.HasField("mean_scores") and s.viewers == viewers for s in v.seconds)
    return False


def test_watch_live_on_native_grpc_shows_sessions_rates_and_the_emotion_mix(server, crop_size):
    channel = grpc.intercept_channel(grpc.insecure_channel(server.grpc_target), BearerAuth(server.analyst_key))
    live = live_pb2_grpc.LiveServiceStub(channel)
    before = _cancelled_streams(server, "grpc")
    with Pushers(server.grpc_target, "live-grpc", 5, crop_size):
        stream = live.WatchLive(live_pb2.WatchLiveRequest(video_ids=["live-grpc"]), timeout=30)
        started = time.monotonic()
        for snapshot in stream:
            if _seen(snapshot, "live-grpc", 5):
                break
        else:
            pytest.fail("the stream ended before the sessions showed")
        stream.cancel()
    assert time.monotonic() - started < 10
    assert snapshot.min_viewers == 5 and snapshot.active_sessions >= 5 and snapshot.frames_per_second > 0
    (video,) = snapshot.videos
    mix = next(s.mean_scores for s in reversed(video.seconds) if s.HasField("mean_scores"))
    assert sum(getattr(mix, e) for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) == pytest.approx(1, abs=1e-3)
    channel.close()
    assert wait_until(lambda: _cancelled_streams(server, "grpc") == before + 1), "the cancelled stream ended on the server"


def test_watch_live_needs_an_analytics_key(server):
    with grpc.insecure_channel(server.grpc_target) as channel, pytest.raises(grpc.RpcError) as info:
        next(live_pb2_grpc.LiveServiceStub(channel).WatchLive(live_pb2.WatchLiveRequest()))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _grpc_web_messages(chunks):
    """The data messages of a gRPC-web response body (5-byte frame headers; 0x80 = trailers)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 5:
            flags, size = struct.unpack(">BI", buffer[:5])
            if len(buffer) < 5 + size:
                break
            payload, buffer = buffer[5:5 + size], buffer[5 + size:]
            if flags & 0x80:
                return
            yield live_pb2.LiveSnapshot.FromString(payload)


def _cancelled_streams(server, transport: str = "connect") -> float:
    return server.parts.metrics.registry.get_sample_value(
        "affectline_rpc_duration_seconds_count",
        {"service": "affectline.v1.LiveService", "method": "WatchLive", "transport": transport, "code": "CANCELLED"},
    ) or 0.0


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_grpc_web_stream_outlives_the_read_timeout_and_ends_with_its_client(server):
    # The server's HTTP read timeout is 1 s: a client that sends nothing after its request must
    # still get snapshots for as long as it listens.
    before = _cancelled_streams(server)
    body = live_pb2.WatchLiveRequest(interval_ms=250).SerializeToString()
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **bearer(server.analyst_key)}
    started = time.monotonic()
    with httpx.Client(timeout=10) as client, client.stream(
        "POST", f"{server.http_base}/affectline.v1.LiveService/WatchLive",
        content=struct.pack(">BI", 0, len(body)) + body, headers=headers,
    ) as response:
        assert response.status_code == 200
        count = 0
        for _ in _grpc_web_messages(response.iter_bytes()):
            count += 1
            if time.monotonic() - started > 3.5:
                break
    assert time.monotonic() - started > 3.5 and count >= 10, count
    # The client went away: the server's generator is cancelled, not left running.
    assert wait_until(lambda: _cancelled_streams(server) == before + 1)


def test_a_stalled_request_body_is_still_closed_after_the_read_timeout(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /affectline.v1.LiveService/WatchLive HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/grpc-web+proto\r\nContent-Length: 1000\r\n\r\n\0")
        started = time.perf_counter()
        while sock.recv(4096):
            pass
    assert time.perf_counter() - started < 3.0


# --- in a real browser, over gRPC-web ----------------------------------------------------------------

def poll(browser: Browser, expr: str, timeout_s: float):
    """The value of `expr` in the page once truthy. Polled from here: the server's CSP forbids
    the string evaluation playwright's own waitForFunction uses in the page."""
    deadline = time.monotonic() + timeout_s
    while (value := browser.js(expr)) in (None, False, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value, f"not seen within {timeout_s} s: {expr}"
    return value


@pytest.mark.skipif(missing_prerequisites() is not None, reason=str(missing_prerequisites()))
@pytest.mark.skipif(not (REPO / "server/affectline/static/app/live.js").exists(), reason="live bundle not built (bash scripts/build_client.sh)")
def test_watch_live_in_chromium_over_grpc_web(server, crop_size, tmp_path):
    y4m = tmp_path / "cam.y4m"  # the bridge launches with a fake camera; this page never opens it
    write_y4m(y4m, [(np.zeros((48, 64, 3), dtype=np.uint8), 2)])
    browser = Browser(y4m)
    try:
        key = server.create_key(ANALYTICS_READ, name="live page")
        browser.call("goto", url=f"{server.http_base}/live.html#key={key}&video=live-browser&interval_ms=250")
        poll(browser, "window.affectlineLive && window.affectlineLive.snapshots >= 1", 15)
        assert browser.js("window.affectlineLive.last.videos.length") == 0  # nothing watched yet
        with Pushers(server.grpc_target, "live-browser", 5, crop_size):
            started = time.monotonic()
            seen = poll(browser, 
                "(() => { const v = (window.affectlineLive.last || {videos: []}).videos.find(v => v.videoId === 'live-browser');"
                " return v && v.activeSessions === 5 && v.framesPerSecond > 0"
                " && v.seconds.some(s => s.meanScores && s.viewers === 5) ? v : false; })()", 10)
            latency = time.monotonic() - started
        assert browser.js("window.affectlineLive.error") == ""
        assert latency < 5, latency
        mix = next(s["meanScores"] for s in seen["seconds"] if s.get("meanScores"))
        assert sum(mix[e] for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) == pytest.approx(1, abs=1e-3)
    finally:
        browser.close()

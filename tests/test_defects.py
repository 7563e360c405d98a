"""Regression tests for the defects of issue 42 ("Defects found when tried as an attacker would").

Most run the SessionService in-process with a stand-in model (uniform scores, an optional
delay) on SQLite and PostgreSQL; the transport ones run a real server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import AsyncIterator

import grpc
import httpx
import numpy as np
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from sqlalchemy import event, insert
from sqlalchemy.exc import OperationalError

from affectline import crypto
from affectline.config import Settings
from affectline.metrics import Metrics
from affectline.partner_client import ClientSession, Frame, crop_batch, start_request
from affectline.services.send_pacer import SendPacer
from affectline.services.crop_batch_wire import count_crop_frames
from affectline.services.session_service import CropSpec, SessionService
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.database import make_engine, upgrade
from affectline.storage.records import BatchRecord, FrameRecord
from affectline.storage.timeline_store import TimelineStore, open_store
from affectline.v1 import analytics_pb2, session_pb2
from api_client import GrpcPartner, bearer
from server_harness import running_server

SIZE = 48
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def crops(n: int, start_ms: int = 0) -> list[Frame]:
    rng = np.random.default_rng(start_ms)
    return [Frame(start_ms + 33 * i, rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)) for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class InProcess:
    """A SessionService on a real store with a stand-in model; `restart()` is a new process."""

    def __init__(self, url: str, *, delay_s: float = 0.0, **service_kw) -> None:
        self.engine = make_engine(url)
        upgrade(self.engine)  # a no-op on the migrated db_url fixtures
        self.store = TimelineStore(self.engine)
        self.metrics = Metrics.create()
        self.writer = GroupCommitWriter(self.store, metrics=self.metrics)
        self.wrapper = crypto.KeyWrapper(os.urandom(crypto.KEY_BYTES))
        self.delay_s = delay_s
        self.service_kw = service_kw
        self.service = self._service()

    def _service(self) -> SessionService:
        async def score(batch: np.ndarray, *, sequence: str | None = None) -> np.ndarray:
            await asyncio.sleep(self.delay_s)
            return np.full((len(batch), 7), 1 / 7, dtype=np.float32)

        kw = {"session_ttl": timedelta(hours=1), **self.service_kw}
        return SessionService(store=self.store, writer=self.writer, score=score, crop_spec=CropSpec(SIZE, SIZE, 1, "stub/1", 32),
                              key_wrapper=self.wrapper, metrics=self.metrics, **kw)

    def restart(self) -> None:
        self.service = self._service()

    async def start(self, viewer_id: str = "viewer-1", **kw) -> ClientSession:
        key = ec.generate_private_key(ec.SECP256R1())
        response = await self.service.start_session(start_request(key, video_id="v", viewer_id=viewer_id, **kw))
        return ClientSession.open(key, response)

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()


@asynccontextmanager
async def in_process(url: str, **kw) -> AsyncIterator[InProcess]:
    harness = InProcess(url, **kw)
    try:
        yield harness
    finally:
        await asyncio.to_thread(harness.close)


async def refused(call) -> ConnectError:
    with pytest.raises(ConnectError) as info:
        await call
    return info.value


# --- 1. frames stored after EndSession ----------------------------------------------------


def test_a_push_queued_behind_end_session_is_refused_and_the_summary_matches_the_timeline(db_url):
    async def scenario() -> None:
        async with in_process(db_url, delay_s=0.05) as h:
            session = await h.start()
            first = asyncio.create_task(h.service.push_crops(session.push_request(crops(10))))
            lock = h.service._sessions._live[session.session_id].lock
            while not lock.locked():  # until the first batch holds the session's lock (in the model)
                await asyncio.sleep(0.001)
            end = asyncio.create_task(h.service.end_session(session.end_request()))
            await asyncio.sleep(0)
            late = [asyncio.create_task(h.service.push_crops(session.push_request(crops(10, 333 * (i + 1)))))
                    for i in range(3)]  # queued behind EndSession
            outcomes = await asyncio.gather(first, end, *late, return_exceptions=True)
            assert outcomes[0].frames_accepted_total == 10
            for outcome in outcomes[2:]:
                assert isinstance(outcome, ConnectError) and outcome.code is Code.FAILED_PRECONDITION
            summary = outcomes[1].summary
            stored = await asyncio.to_thread(h.store.count_frames, session.session_id)
            assert summary.frames_total == stored == 10

    asyncio.run(scenario())


# --- 2. frame bombs and oversized bodies (service part) ---------------------------------------


def test_frames_are_counted_from_the_wire_format_as_the_parser_would():
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 33):
        batch = crop_batch([Frame(i, rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8) if i % 2 else None,
                                  head_yaw_deg=1.5) for i in range(n)])
        data = batch.SerializeToString()
        assert count_crop_frames(data, stop_after=100) == n
    assert count_crop_frames(b"\x0a\x00" * 4_000_000, stop_after=32) == 33  # stops early, builds nothing
    for malformed in (b"\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x0b"):
        with pytest.raises(ValueError):
            count_crop_frames(malformed, stop_after=32)


def test_a_frame_bomb_is_refused_before_parsing_and_an_oversized_ciphertext_before_decrypting(tmp_path):
    async def scenario() -> None:
        async with in_process(f"sqlite:///{tmp_path / 'a.db'}") as h:
            session = await h.start()
            # 30,000 empty frames: 60 KB, within the ciphertext bound for 32 frames of 48x48.
            bomb = b"\x0a\x00" * 30_000
            nonce, ct = crypto.encrypt_batch(session.key, session.session_id, 0, bomb)
            request = session_pb2.PushCropsRequest(session_id=session.session_id, session_token=session.token,
                                                   seq=0, nonce=nonce, ciphertext=ct)
            started = time.perf_counter()
            error = await refused(h.service.push_crops(request))
            assert error.code is Code.INVALID_ARGUMENT and "more than 32 frames" in error.message
            assert time.perf_counter() - started < 0.5
            # A ciphertext bigger than any allowed batch is refused before AES-GCM even runs.
            spec = CropSpec(SIZE, SIZE, 1, "stub/1", 32)
            request.ciphertext = b"\0" * (spec.max_ciphertext_bytes + 1)
            error = await refused(h.service.push_crops(request))
            assert error.code is Code.INVALID_ARGUMENT and "larger than any batch" in error.message
            assert "authentication" not in error.message
            request.ciphertext = b"\0" * spec.max_ciphertext_bytes  # at the bound: decrypted (and fails)
            assert "authentication" in (await refused(h.service.push_crops(request))).message
            # A full, legal batch is still accepted.
            assert (await h.service.push_crops(session.encrypt(0, crop_batch(crops(32))))).frames_accepted_total == 32

    asyncio.run(scenario())


# --- 5. cache race after a restart -------------------------------------------------------------


def test_concurrent_first_pushes_after_a_restart_share_one_live_session(db_url):
    async def scenario() -> None:
        async with in_process(db_url, delay_s=0.01) as h:
            session = await h.start()
            await h.service.push_crops(session.push_request(crops(10)))
            h.restart()  # a new process: empty cache, the session is resumed from the database
            requests = [session.push_request(crops(10, 333 * (i + 1))) for i in range(4)]
            acks = await asyncio.gather(*(h.service.push_crops(r) for r in requests))
            stored = await asyncio.to_thread(h.store.count_frames, session.session_id)
            assert stored == 50
            assert max(a.frames_accepted_total for a in acks) == stored
            assert sorted(a.frames_accepted_total for a in acks) == [20, 30, 40, 50]
            assert len(h.service._sessions) == 1

    asyncio.run(scenario())


# --- 6. sessions leave memory; sessions per viewer -----------------------------------------------


def test_idle_and_expired_sessions_leave_memory_with_their_send_slots(tmp_path):
    async def scenario() -> None:
        clock = Clock()
        pacer = SendPacer()
        async with in_process(f"sqlite:///{tmp_path / 'a.db'}", now=clock, pacer=pacer, idle_evict_s=60,
                              session_ttl=timedelta(minutes=30)) as h:
            cache = h.service._sessions
            a = await h.start("viewer-a", frames_per_batch=10)
            await h.service.push_crops(a.push_request(crops(10)))
            clock.now += timedelta(seconds=61)  # a is idle past the bound
            b = await h.start("viewer-b", frames_per_batch=10)
            assert a.session_id not in cache and b.session_id in cache
            assert pacer.paced_sessions() == 1  # a's slot went with it
            ack = await h.service.push_crops(a.push_request(crops(10, 333)))  # reloaded from the database
            assert ack.frames_accepted_total == 20 and a.session_id in cache
            clock.now += timedelta(minutes=31)  # both expired
            assert set(cache.sweep()) == {a.session_id, b.session_id} and len(cache) == 0
            assert pacer.paced_sessions() == 0
            error = await refused(h.service.push_crops(a.push_request(crops(1))))
            assert error.code is Code.FAILED_PRECONDITION and "expired" in error.message

    asyncio.run(scenario())


def test_a_viewer_id_can_hold_only_so_many_open_sessions(db_url):
    async def scenario() -> None:
        async with in_process(db_url, max_sessions_per_viewer=3) as h:
            sessions = [await h.start("viewer-x") for _ in range(3)]
            error = await refused(h.start("viewer-x"))
            assert error.code is Code.RESOURCE_EXHAUSTED and "3 open sessions" in error.message
            await h.start("viewer-y")  # other viewers are not affected
            await h.service.end_session(sessions[0].end_request())
            await h.start("viewer-x")  # an ended session frees its place
            # Concurrent starts cannot race past the cap.
            results = await asyncio.gather(*(h.start("viewer-z") for _ in range(6)), return_exceptions=True)
            assert sum(isinstance(r, ClientSession) for r in results) == 3

    asyncio.run(scenario())


# --- 7. seq range and internal errors -----------------------------------------------------------


def test_seq_past_2_pow_31_is_stored_and_read_back_and_past_2_pow_63_refused(db_url):
    async def scenario() -> None:
        async with in_process(db_url) as h:
            session = await h.start()
            big = 2**31 + 5
            request = session.encrypt(big, crop_batch(crops(4)))
            ack = await h.service.push_crops(request)
            assert ack.seq == big and not ack.duplicate and ack.frames_accepted_total == 4
            assert (await h.service.push_crops(request)).duplicate  # a retry, recognised
            stored = await asyncio.to_thread(h.store.get_batch, session.session_id, big)
            assert stored is not None and [f.seq for f in stored.frames] == [big] * 4
            error = await refused(h.service.push_crops(session.encrypt(2**63, crop_batch(crops(1)))))
            assert error.code is Code.INVALID_ARGUMENT and "2^63-1" in error.message

    asyncio.run(scenario())


def test_storage_errors_reach_the_log_but_never_the_client(tmp_path, caplog):
    async def scenario() -> None:
        async with in_process(f"sqlite:///{tmp_path / 'a.db'}") as h:
            session = await h.start()

            async def failing_write(session_id: str, batch: BatchRecord) -> bool:
                raise OperationalError("INSERT INTO batches (session_id, seq) VALUES (?, ?)", (session_id, 7),
                                       Exception("integer out of range"))

            h.service._writer.write = failing_write  # type: ignore[method-assign]
            error = await refused(h.service.push_crops(session.push_request(crops(2))))
            assert error.code is Code.UNAVAILABLE and "retry" in error.message
            for leak in ("INSERT", "batches", "out of range", session.session_id + "', 7"):
                assert leak not in error.message

    with caplog.at_level(logging.ERROR, logger="affectline.services.session_service"):
        asyncio.run(scenario())
    assert "INSERT INTO batches" in caplog.text  # logged server-side


# --- 9. erasure of a viewer with a live session -----------------------------------------------------


def test_pushes_and_end_of_an_erased_live_session_answer_not_found(tmp_path, fer_faces):
    settings = Settings(data_dir=tmp_path / "data")
    with running_server(settings) as server:
        partner = GrpcPartner(server.grpc_target)
        cache = server.parts.session_service._sessions
        pushed = partner.start(viewer_id="erase-me")
        partner.sessions.PushCrops(pushed.push_request([Frame(0, fer_faces["happy"][0])]))
        idle = partner.start(viewer_id="erase-me")
        partner.sessions.PushCrops(idle.push_request([Frame(0, fer_faces["happy"][0])]))
        assert pushed.session_id in cache and idle.session_id in cache
        with open_store(settings.resolved_database_url) as store:  # `affectline privacy erase`
            assert store.erase_viewer("erase-me") == 2
        for _ in range(2):  # not UNAVAILABLE "retry" forever
            with pytest.raises(grpc.RpcError) as info:
                partner.sessions.PushCrops(pushed.push_request([Frame(33, fer_faces["happy"][0])]))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
        assert pushed.session_id not in cache
        with pytest.raises(grpc.RpcError) as info:
            partner.sessions.EndSession(pushed.end_request())
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:  # EndSession while still cached: was a KeyError
            partner.sessions.EndSession(idle.end_request())
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "erased" in info.value.details()
        assert idle.session_id not in cache
        partner.close()


# --- 2, 3, 10 over the transports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), max_frames_per_batch=32, http_read_timeout_s=1.0)
    with running_server(settings) as s:
        yield s


def test_native_grpc_refuses_an_oversized_message_unread(server):
    partner = GrpcPartner(server.grpc_target)
    session = partner.start()
    request = session_pb2.PushCropsRequest(session_id=session.session_id, session_token=session.token, seq=0,
                                           nonce=b"n" * 12, ciphertext=b"\0" * (2 * 1024 * 1024))
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as info:
        partner.sessions.PushCrops(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.perf_counter() - started < 3.0  # ~0.1 s here: refused as it arrives, never parsed
    partner.close()


def test_json_rpc_refuses_an_oversized_body_with_413_before_parsing_it(server):
    url = server.http_base + "/jsonrpc"
    bomb = b"[" + b"{}," * (2 * 1024 * 1024) + b"{}]"  # 6 MB: once cost 127 MB to parse
    for content in (bomb, (bomb[i:i + 65536] for i in range(0, len(bomb), 65536))):  # sized, then chunked
        started = time.perf_counter()
        r = httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=10)
        elapsed = time.perf_counter() - started
        assert r.status_code == 413
        error = r.json()["error"]
        assert error["code"] == -32008 and error["data"]["grpc_status"] == "RESOURCE_EXHAUSTED"
        assert "larger than 1048576 bytes" in error["message"]
        assert elapsed < 2.0
    ok = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
                               "params": {"sessionId": "nope"}}, headers=bearer(server.analyst_key))
    assert ok.json()["error"]["data"]["grpc_status"] == "NOT_FOUND"  # normal bodies are unaffected


def test_connect_refuses_an_oversized_message(server):
    body = b'{"sessionId": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    r = httpx.post(server.http_base + "/affectline.v1.SessionService/PushCrops", content=body,
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.json()["code"] == "resource_exhausted"


def _add_frames(store: TimelineStore, session_id: str, n: int, per_batch: int = 500) -> None:
    for seq in range(0, n // per_batch):
        frames = tuple(FrameRecord(seq=seq, index=i, video_time_ms=(seq * per_batch + i) * 33, captured_at=None,
                                   face_present=bool(i % 2), probs=(1 / 7,) * 7 if i % 2 else None)
                       for i in range(per_batch))
        store.append_batch(session_id, BatchRecord(seq=seq, nonce=b"%012d" % seq, digest=b"d", frames=frames))


def test_session_timeline_pages_concatenate_to_the_whole_timeline_over_grpc_and_json_rpc(server):
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    session = partner.start()
    _add_frames(server.parts.store, session.session_id, 12_000)
    expected = [f.video_time_ms for f in server.parts.store.session_frames(session.session_id)]

    def grpc_pages(page_size: int) -> list[int]:
        times, token, sizes = [], "", []
        while True:
            page = partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(
                session_id=session.session_id, page_size=page_size, page_token=token))
            sizes.append(len(page.frames))
            times += [f.video_time_ms for f in page.frames]
            token = page.next_page_token
            if not token:
                return sizes, times

    sizes, times = grpc_pages(0)  # the default page: 5,000 frames
    assert sizes == [5000, 5000, 2000] and times == expected
    sizes, times = grpc_pages(50_000)  # clamped to the 10,000 maximum
    assert sizes == [10_000, 2000] and times == expected

    times, token, calls = [], None, 0
    while token != "":
        params = {"sessionId": session.session_id, "pageSize": 4000, **({"pageToken": token} if token else {})}
        r = httpx.post(server.http_base + "/jsonrpc", json={
            "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline", "params": params},
            headers=bearer(server.analyst_key))
        result = r.json()["result"]
        times += [int(f.get("videoTimeMs", 0)) for f in result["frames"]]
        token = result.get("nextPageToken", "")
        calls += 1
    assert calls == 3 and times == expected

    with pytest.raises(grpc.RpcError) as info:  # a token of another session, or garbage
        other = partner.start(viewer_id="viewer-2")
        first = partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id))
        partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(
            session_id=other.session_id, page_token=first.next_page_token))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in info.value.details()
    partner.close()


def test_a_stalled_request_body_is_closed_after_the_read_timeout(server):
    with socket.create_connection(("127.0.0.1", server.server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n[")
        started = time.perf_counter()
        received = b""
        while chunk := sock.recv(4096):  # b"" once the server closes the connection
            received += chunk
        elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"the connection stayed open {elapsed:.1f} s with a 1 s read timeout"


# --- 4. /watch looks up one video ---------------------------------------------------------------------


def test_watch_page_cost_does_not_depend_on_the_number_of_videos(tmp_path):
    from starlette.applications import Starlette

    from affectline.serving.pages import page_routes
    from affectline.storage.tables import Variant, Video

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    store = TimelineStore(engine)
    store.set_video_media("demo", "Demo", str(tmp_path / "demo.mp4"), "video/mp4")
    (tmp_path / "demo.mp4").write_bytes(b"\0" * 16)
    (tmp_path / "watch.html").write_text("<html></html>")
    app = Starlette(routes=page_routes(store, static_dir=tmp_path))

    class Client:  # an in-process HTTP client on the ASGI app
        @staticmethod
        def get(path: str) -> httpx.Response:
            async def call() -> httpx.Response:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                    return await c.get(path)

            return asyncio.run(call())

    client = Client()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *a: statements.append(sql))

    def cost() -> list[int]:
        counts = []
        for path in ("/watch/demo", "/api/videos/demo", "/media/demo"):
            statements.clear()
            assert client.get(path).status_code == 200
            counts.append(len(statements))
        return counts

    before = cost()
    with engine.begin() as conn:  # 2,000 more videos with 3 variants each
        conn.execute(insert(Video.__table__), [{"video_id": f"v{i}", "title": "", "created_at": T0} for i in range(2000)])
        conn.execute(insert(Variant.__table__),
                     [{"video_id": f"v{i}", "variant_id": f"x{j}"} for i in range(2000) for j in range(3)])
    started = time.perf_counter()
    after = cost()
    assert after == before and max(after) <= 2
    assert all("WHERE" in s for s in statements)
    assert time.perf_counter() - started < 1.0
    assert client.get("/watch/none-such").status_code == 404
    engine.dispose()


def test_an_unexpected_error_reaches_native_grpc_clients_as_a_bare_internal(server, monkeypatch):
    def broken(*args):
        raise OperationalError("SELECT * FROM frames WHERE session_id = %(id)s", {"id": "x"}, Exception("server closed"))

    monkeypatch.setattr(server.parts.store, "session_frames_page", broken)
    partner = GrpcPartner(server.grpc_target, api_key=server.analyst_key)
    session = partner.start(viewer_id="viewer-broken")
    with pytest.raises(grpc.RpcError) as info:
        partner.analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id))
    assert info.value.code() == grpc.StatusCode.INTERNAL and info.value.details() == "internal error"
    partner.close()

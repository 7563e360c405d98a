"""Faults survived, nothing lost: each test breaks something under a running `affectline serve` and
counts the frames sent, acked, stored and duplicated (printed; run with -s to see them).

An ack means the batch is durable, so in every test: every acked frame is in the stored timeline,
stored == acked, and no frame is stored twice. Clients are `partner_client.ResumableSender`s: a batch
is re-sent byte-identical (same seq, nonce, ciphertext) until acked.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from sqlalchemy import make_url

from affectline.partner_client import CallFailed, ConnectSessions, Frame, GrpcSessions, ResumableSender
from affectline.serve_process import ServeProcess, free_port, free_ports, start_serve
from affectline.v1 import session_pb2
from db_backends import _throwaway_pg_database
from fault_support import SessionRunner, check_runners, p99, retry_call, tally

SERVE_ARGS = ["--time-variants", "0", "--max-run-ms", "0"]  # no start-up probes: faster (re)starts


# --- helpers --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from conftest import served_crop_size

    size = served_crop_size()
    return np.random.default_rng(7).integers(0, 256, (size, size), dtype=np.uint8)


def serve(tmp_path: Path, database_url: str | None = None, extra: list[str] | None = None,
          env: dict[str, str] | None = None) -> ServeProcess:
    args = [*SERVE_ARGS, *(extra or [])]
    if database_url:
        args += ["--database-url", database_url]
    return start_serve(tmp_path / "data", tmp_path / "serve.log", args, timeout_s=90,
                       env=None if env is None else {**os.environ, **env})


def sqlite_url(server: ServeProcess) -> str:
    return f"sqlite:///{server.data_dir / 'affectline.db'}"


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class TcpProxy:
    """A TCP proxy in front of PostgreSQL, on its own asyncio loop: cut() closes every connection
    through it and refuses new ones (accepted and closed at once) until restore(); stall() keeps
    every connection open and accepts new ones, but forwards nothing (a database that stopped
    answering) until restore()."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pg-proxy", daemon=True)
        self.cut_off = False
        self.flowing = asyncio.Event()
        self.loop.call_soon_threadsafe(self.flowing.set)
        self.links: set[asyncio.Transport] = set()
        self.refused = 0
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._link, "127.0.0.1", 0), self.loop).result()
        self.port = self.server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            writer.transport.abort()
            return
        await self.flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self.links.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links.difference_update(pair)

    def _cut(self) -> None:
        self.cut_off = True
        for transport in list(self.links):
            transport.abort()
        self.links.clear()

    def cut(self) -> None:
        self.loop.call_soon_threadsafe(self._cut)

    def stall(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "cut_off", False)
        self.loop.call_soon_threadsafe(self.flowing.set)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._cut)
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class HealthPoller(threading.Thread):
    """GET /healthz every 0.25 s: (monotonic time, HTTP status or 0 when it did not answer)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = httpx.get(f"{self.base}/healthz", timeout=2).status_code
            except httpx.HTTPError:
                status = 0
            self.samples.append((time.monotonic(), status))
            self.stop.wait(0.25)


def join_all(runners: list[SessionRunner], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for r in runners:
        r.join(max(0.1, deadline - time.monotonic()))
        assert not r.is_alive(), f"{r.name} still running after {timeout_s} s"


# --- 1. PostgreSQL unreachable for 10 s --------------------------------------------------------------------------


def test_a_database_that_stops_answering_turns_healthz_503_without_holding_the_server(pg_admin_url, tmp_path):
    """PostgreSQL stalls (connections stay open, nothing answers): /healthz says 503 within its
    2 s deadline instead of hanging, the event loop stays free (/metrics answers at once), probes
    do not pile up stuck queries, and /healthz is 200 again once the database answers."""
    with _throwaway_pg_database(pg_admin_url) as real_url:
        real = make_url(real_url)
        proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        server = serve(tmp_path, real.set(port=proxy.port).render_as_string(hide_password=False))
        try:
            assert httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200
            proxy.stall()
            took = []
            for _ in range(3):
                t = time.monotonic()
                r = httpx.get(f"{server.base}/healthz", timeout=10)
                took.append(time.monotonic() - t)
                assert r.status_code == 503 and r.json()["database"] == "error: no answer within 2 s", r.text
                t = time.monotonic()
                assert httpx.get(f"{server.base}/metrics", timeout=10).status_code == 200
                assert time.monotonic() - t < 1.0, "the event loop is not waiting on the database"
            assert all(1.9 < d < 3.5 for d in took), took
            proxy.restore()
            deadline = time.monotonic() + 20
            while httpx.get(f"{server.base}/healthz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "healthz did not recover"
                time.sleep(0.2)
        finally:
            proxy.restore()
            assert server.stop() == 0
            proxy.close()
        print(f"\nstalled database: /healthz 503 after {', '.join(f'{d:.2f}' for d in took)} s")


def test_postgres_unreachable_for_10s_back_pressures_loses_nothing_and_recovers(pg_admin_url, tmp_path, crop):
    """PostgreSQL cut off for 10 s (a proxy closes every connection and refuses new ones) while 3
    sessions send 30 frames/s each: PushCrops answers UNAVAILABLE with a retry hint (nothing is
    acked that is not committed), /healthz says 503 and affectline_db_write_errors_total counts the
    failures; once connections go through again the service recovers by itself, and the timeline
    holds exactly the acked frames, none twice."""
    with _throwaway_pg_database(pg_admin_url) as real_url:
        real = make_url(real_url)
        proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        server = serve(tmp_path, real.set(port=proxy.port).render_as_string(hide_password=False))
        try:
            stop = threading.Event()
            runners = [SessionRunner(GrpcSessions(server.grpc_target), name=f"pg-outage-{i}", crop=crop, stop=stop,
                                     frames_per_batch=10, interval_s=0.333, max_wait_s=60) for i in range(3)]
            health = HealthPoller(server.base)
            health.start()
            for r in runners:
                r.start()
            time.sleep(3)
            errors_before = metric(server.base, "affectline_db_write_errors_total")
            cut_at = time.monotonic()
            proxy.cut()
            time.sleep(10)
            errors_during = metric(server.base, "affectline_db_write_errors_total")
            proxy.restore()
            restored_at = time.monotonic()
            time.sleep(4)
            stop.set()
            join_all(runners, 60)
            health.stop.set()
            health.join()
        finally:
            assert server.stop() == 0
            proxy.close()
        check_runners(runners)
        t = tally(runners, real_url)
    failures = [f for r in runners for f in r.sender.failures]
    # Recovery: from restore() to the first ack of every session.
    recovery = max(min(a for a in r.ack_times if a > restored_at) - restored_at for r in runners)
    during = [s for at, s in health.samples if cut_at + 1 < at < restored_at]
    after = [s for at, s in health.samples if at > restored_at + recovery + 1]
    t.notes.update(retries=len(failures), recovery_s=round(recovery, 2),
                   longest_batch_s=round(max(max(r.latencies) for r in runners), 2),
                   healthz_during=sorted(set(during)), db_write_errors=errors_during - errors_before,
                   connections_refused=proxy.refused)
    print("\n" + t.line("postgres unreachable 10 s"))
    assert t.stored == t.acked and t.missing_acked == 0 and t.duplicated == 0
    assert t.acked > 0 and t.sent == t.acked  # every batch was eventually acked
    assert failures and all(f.code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED") for f in failures)
    assert all(f.retry_after_s is not None for f in failures), failures[0]
    assert during and set(during) == {503}, health.samples
    assert after and set(after) == {200}
    assert errors_during > errors_before
    assert recovery < 5.0  # clients back off by at most 1 s; the pool reconnects at once


# --- 2. SIGKILL mid-session, restart; SIGTERM drains ------------------------------------------------------------------


def test_sigkill_mid_session_then_restart_resumes_every_session_with_nothing_lost(tmp_path, crop):
    """The server is SIGKILLed while 4 sessions (2 native gRPC, 2 Connect) send, then restarted on the
    same ports. Clients give up on their in-flight batch after 2 s, wait, and resume(): every pending
    batch is re-sent byte-identical; the server reloads each session from the database (key unwrapped
    with the KEK). Final timelines are complete (stored == acked == sent) with no duplicates; a batch
    stored just before the kill but never acked is answered `duplicate: true` on resume."""
    server = serve(tmp_path)
    transports = [GrpcSessions(server.grpc_target), GrpcSessions(server.grpc_target),
                  ConnectSessions(server.base), ConnectSessions(server.base)]
    runners = [SessionRunner(t, name=f"kill-{i}", crop=crop, batches=40, frames_per_batch=5, interval_s=0.05,
                             max_wait_s=2.0) for i, t in enumerate(transports)]
    try:
        for r in runners:
            r.start()
        time.sleep(1.5)
        in_flight_acked = sum(r.frames_acked for r in runners)
        server.kill()
        killed_at = time.monotonic()
        time.sleep(1.0)
        server.restart()
        restarted_at = time.monotonic()
        join_all(runners, 120)
    finally:
        assert server.stop() == 0
    check_runners(runners)
    t = tally(runners, sqlite_url(server))
    recovery = max(min(a for a in r.ack_times if a > restarted_at) - restarted_at for r in runners)
    t.notes.update(acked_before_kill=in_flight_acked, restart_s=round(restarted_at - killed_at, 1),
                   resumes=sum(r.resumes for r in runners), duplicate_acks=sum(r.duplicate_acks for r in runners),
                   recovery_after_restart_s=round(recovery, 2))
    print("\n" + t.line("SIGKILL + restart"))
    assert 0 < in_flight_acked < t.sent  # killed mid-session
    assert t.stored == t.acked == t.sent == 4 * 40 * 5 and t.missing_acked == 0 and t.duplicated == 0
    assert all(r.summary_frames == 40 * 5 for r in runners)  # EndSession's summary counts the stored timeline


def test_sigterm_drains_in_flight_batches(tmp_path, crop):
    """SIGTERM while 6 sessions send back to back: the server exits 0; every batch acked before is
    stored; every batch in flight is either acked (and stored) or refused with a clean status
    (UNAVAILABLE/CANCELLED), never left half-done. After a restart the refused ones are resumed: the
    timelines are complete, with no duplicates."""
    server = serve(tmp_path)
    transports = [GrpcSessions(server.grpc_target) for _ in range(6)]
    senders: list[ResumableSender] = []
    refused: list[CallFailed] = []
    sent = [0] * 6
    go = threading.Barrier(7)

    def run(i: int) -> None:
        from affectline.partner_client import ClientSession, start_request
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        session = ClientSession.open(key, transports[i].start(start_request(key, video_id="v", viewer_id=f"term-{i}")))
        sender = ResumableSender(session, transports[i].push, max_wait_s=0)  # one try: see what each batch got
        senders.append(sender)
        go.wait()
        for b in range(1000):
            sent[i] += 10
            try:
                sender.send([Frame((b * 10 + k) * 33, crop) for k in range(10)])
            except CallFailed as exc:
                refused.append(exc)
                return

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(6)]
    for th in threads:
        th.start()
    go.wait()
    time.sleep(1.5)
    returncode = server.stop()
    for th in threads:
        th.join(30)
    acked_at_exit = {id(s): dict(s.acked) for s in senders}
    from fault_support import stored_frames

    stored = stored_frames(sqlite_url(server), [s.session.session_id for s in senders])
    acked_missing = sum(1 for s in senders for seq in s.acked
                        if not any(f[0] == seq for f in stored[s.session.session_id]))
    stored_unacked = sum(1 for s in senders for seq in s.pending
                         if any(f[0] == seq for f in stored[s.session.session_id]))
    assert returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert len(refused) == 6 and all(e.code in ("UNAVAILABLE", "CANCELLED") for e in refused), refused
    assert acked_missing == 0
    server.restart()
    try:
        duplicates = 0
        for s in senders:
            s.max_wait_s = 30  # now retry: the client reconnects to the restarted server
            duplicates += sum(r.duplicate for r in s.resume())
            retry_call(lambda: transports[senders.index(s)].end(s.session.end_request()))
    finally:
        assert server.stop() == 0
    stored = stored_frames(sqlite_url(server), [s.session.session_id for s in senders])
    n_stored = sum(len(v) for v in stored.values())
    n_acked = sum(s.frames_acked for s in senders)
    dup = sum(len(v) - len({f[2] for f in v}) for v in stored.values())
    print(f"\n[SIGTERM drain] frames sent {sum(sent)}, acked before exit "
          f"{sum(len(r.results) for a in acked_at_exit.values() for r in a.values())}, refused batches "
          f"{len(refused)} ({sorted({e.code for e in refused})}), of them stored before exit {stored_unacked}, "
          f"acked after resume {n_acked}, stored {n_stored}, duplicated {dup}, duplicate acks {duplicates}")
    assert n_stored == n_acked == sum(sent) and dup == 0 and duplicates == stored_unacked


# --- 3. bad clients next to good ones ---------------------------------------------------------------------------


def _garbage(base: str, grpc_port: int, http_port: int, stop: threading.Event, count: list[int]) -> None:
    rng = random.Random(1)
    with httpx.Client(base_url=base, timeout=5) as http:
        while not stop.is_set():
            junk = rng.randbytes(rng.randint(1, 2000))
            kind = rng.randrange(4)
            try:
                if kind == 0:
                    http.post("/jsonrpc", content=junk, headers={"content-type": "application/json"})
                elif kind == 1:
                    http.post("/affectline.v1.SessionService/PushCrops", content=junk,
                              headers={"content-type": rng.choice(["application/proto", "application/grpc-web+proto"])})
                else:  # raw bytes at either port
                    with socket.create_connection(("127.0.0.1", grpc_port if kind == 2 else http_port), timeout=2) as s:
                        s.sendall(junk)
            except (httpx.HTTPError, OSError):
                pass
            count[0] += 1
            stop.wait(0.01)


def _slow_clients(http_port: int, n: int, stop: threading.Event) -> list[socket.socket]:
    """n/2 slow bodies (headers, then a byte now and then) and n/2 slow readers (the 1.7 MB viewer
    bundle requested, then never read)."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", http_port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if i % 2 == 0:
            s.sendall(b"POST /jsonrpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n[")
        else:
            s.sendall(b"GET /app/viewer.js HTTP/1.1\r\nhost: x\r\n\r\n")  # 1.7 MB, never read
        socks.append(s)

    def drip() -> None:
        while not stop.wait(0.5):
            for s in socks[::2]:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass

    threading.Thread(target=drip, daemon=True).start()
    return socks


def test_garbage_slow_and_1000_idle_clients_leave_good_sessions_p99_and_frames_intact(tmp_path, crop):
    """3 well-behaved sessions at 30 fps (10-frame batches every 333 ms) are timed alone, then again
    while a client sends garbage (random bytes as JSON-RPC, Connect, gRPC-web and raw TCP on both
    ports), 40 slow clients hold connections (slow bodies, unread responses) and 1,000 sessions sit
    idle (started, never pushing). The good sessions' p99 stays within 4x of their own baseline
    (+30 ms for timer noise on a busy host), and none of their frames is lost."""
    server = serve(tmp_path, extra=["--send-pacing", "0"])
    try:
        def good(tag: str, seconds: float) -> list[SessionRunner]:
            runners = [SessionRunner(GrpcSessions(server.grpc_target), name=f"good-{tag}-{i}", crop=crop,
                                     batches=int(seconds * 3), frames_per_batch=10, interval_s=0.333,
                                     start_delay_s=i * 0.111) for i in range(3)]
            for r in runners:
                r.start()
            join_all(runners, seconds + 60)
            check_runners(runners)
            return runners

        baseline = good("alone", 8)
        idle = GrpcSessions(server.grpc_target)
        started_at = time.monotonic()
        from cryptography.hazmat.primitives.asymmetric import ec

        from affectline.partner_client import start_request

        key = ec.generate_private_key(ec.SECP256R1())
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: idle.start(start_request(key, video_id="v", viewer_id=f"idle-{i}")), range(1000)))
        idle_start_s = time.monotonic() - started_at
        stop = threading.Event()
        garbage_count = [0]
        garbage = threading.Thread(target=_garbage, args=(server.base, server.grpc_port, server.http_port, stop,
                                                         garbage_count), daemon=True)
        garbage.start()
        slow = _slow_clients(server.http_port, 40, stop)
        try:
            loaded = good("with-bad-clients", 8)
            alive = httpx.get(f"{server.base}/healthz", timeout=5).status_code
        finally:
            stop.set()
            garbage.join(10)
            for s in slow:
                s.close()
    finally:
        assert server.stop() == 0
    t_base, t_loaded = tally(baseline, sqlite_url(server)), tally(loaded, sqlite_url(server))
    p99_base = p99([x for r in baseline for x in r.latencies])
    p99_loaded = p99([x for r in loaded for x in r.latencies])
    t_loaded.notes.update(p99_alone_ms=round(p99_base * 1000, 1), p99_with_bad_clients_ms=round(p99_loaded * 1000, 1),
                          garbage_requests=garbage_count[0], slow_connections=40, idle_sessions=1000,
                          idle_sessions_started_in_s=round(idle_start_s, 1))
    print("\n" + t_base.line("good sessions alone") + "\n" + t_loaded.line("good sessions with bad clients"))
    for t in (t_base, t_loaded):
        assert t.stored == t.acked == t.sent and t.missing_acked == 0 and t.duplicated == 0
    assert alive == 200
    assert garbage_count[0] > 100
    assert p99_loaded <= 4 * p99_base + 0.030, (p99_base, p99_loaded)


# --- 4. start-up errors ------------------------------------------------------------------------------------------


def _broken_models(tmp_path: Path, damage: str) -> Path:
    """A copy of the packaged model registry with the default model's files damaged or removed."""
    from affectline.models.registry import PACKAGED_ROOT

    root = tmp_path / "models"
    for manifest in PACKAGED_ROOT.glob("*/*/manifest.json"):
        version_dir = root / manifest.parent.relative_to(PACKAGED_ROOT)
        version_dir.mkdir(parents=True)
        shutil.copy(manifest, version_dir / "manifest.json")
        for onnx in manifest.parent.glob("*.onnx"):
            if damage == "missing" and onnx.name != "model.onnx":
                continue  # the precision variants the manifest names are gone
            (version_dir / onnx.name).write_bytes(onnx.read_bytes()[:4096] if damage == "corrupt" else onnx.read_bytes())
    return root


@pytest.mark.parametrize("fault", ["model missing", "model variant missing", "model corrupt", "database unreachable",
                                   "database url malformed", "http port in use", "grpc port in use"])
def test_start_up_errors_are_one_clear_line_and_a_non_zero_exit(tmp_path, fault):
    """Each start-up fault ends `affectline serve` with a non-zero exit and one line
    `affectline serve: error: ...` naming the cause; no traceback."""
    grpc_port, http_port = free_ports(2)
    args = ["--data-dir", str(tmp_path / "data"), "--grpc-port", str(grpc_port), "--http-port", str(http_port),
            *SERVE_ARGS]
    env = {**os.environ}
    blocker = None
    if fault == "model missing":
        env["AFFECTLINE_MODEL"] = "no-such-model"
    elif fault == "model variant missing":
        env["AFFECTLINE_MODELS_DIR"] = str(_broken_models(tmp_path, "missing"))
        args += ["--model-variant", "int8"]
    elif fault == "model corrupt":
        env["AFFECTLINE_MODELS_DIR"] = str(_broken_models(tmp_path, "corrupt"))
    elif fault == "database unreachable":
        db_port = free_port()
        args += ["--database-url", f"postgresql://postgres@127.0.0.1:{db_port}/nothing"]
    elif fault == "database url malformed":
        args += ["--database-url", "nosuchdb://x"]
    else:
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", http_port if fault == "http port in use" else grpc_port))
        blocker.listen()
    try:
        result = subprocess.run([sys.executable, "-m", "affectline", "serve", *args], capture_output=True, text=True,
                                timeout=90, env=env)
    finally:
        if blocker is not None:
            blocker.close()
    errors = [line for line in result.stderr.splitlines() if line.startswith("affectline serve: error:")]
    print(f"\n[{fault}] exit {result.returncode}: {errors[-1] if errors else result.stderr[-500:]}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-1500:]
    expected = {"model missing": "no-such-model", "model variant missing": "int8", "model corrupt": "model",
                "database unreachable": "Connection refused", "database url malformed": "nosuchdb",
                "http port in use": str(http_port), "grpc port in use": str(grpc_port)}[fault]
    assert expected in errors[0], errors[0]

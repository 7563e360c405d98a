"""Three replicas behind HAProxy with session affinity (deploy/haproxy/haproxy.cfg, used as shipped).

What is proven: 3 `affectline serve` processes share one PostgreSQL database and one AFFECTLINE_KEK
behind HAProxy 2.6, which hashes `x-affectline-session` on a consistent-hashing ring, for Connect
over HTTP/1.1 and for native gRPC over h2 (the metadata key). While all replicas live, every call of
a session reaches one replica (read from HAProxy's per-request log, cross-checked with the
replicas' own PushCrops counters). Then the replica serving the most sessions is SIGKILLed
mid-session: its sessions re-hash onto the survivors (each onto one), the clients re-send their
unacked batches byte-identical, the new replica loads the session from the database, and every
timeline ends complete: stored == acked == sent, nothing twice. Sessions on the surviving replicas
never move. Skipped, with the reason, when haproxy or PostgreSQL is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import defaultdict

import httpx
import numpy as np
import pytest

from affectline.commands.haproxy import HaProxy
from affectline.partner_client import ConnectSessions, GrpcSessions
from affectline.serve_process import ServeProcess, start_serve
from db_backends import _throwaway_pg_database
from fault_support import SessionRunner, check_runners, tally

SESSIONS_PER_TRANSPORT = 4
BATCHES, FRAMES, INTERVAL_S = 50, 5, 0.1

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not installed (scripts/system_deps.sh installs Debian's haproxy)")


# --- helpers --------------------------------------------------------------------------------------------------


def session_routes(proxy: HaProxy) -> list[tuple[str, str, str, int, str]]:
    """(frontend, server, session id, HTTP status, path) of every logged request naming a session."""
    return [(r.frontend, r.server, r.session_id, r.status, r.path) for r in proxy.routes() if r.session_id]


def homes(routes: list[tuple[str, str, str, int, str]], session_ids: set[str]) -> dict[str, list[str]]:
    """Per session, the replicas that answered its calls (2xx), in order of first appearance."""
    seen: dict[str, list[str]] = defaultdict(list)
    for _, server, sid, status, _ in routes:
        if sid in session_ids and 200 <= status < 300 and server not in seen[sid]:
            seen[sid].append(server)
    return seen


def push_count(replica: ServeProcess) -> float:
    text = httpx.get(f"{replica.base}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(
        r'^affectline_rpc_duration_seconds_count\{[^}]*method="PushCrops"[^}]*\} ([0-9.e+]+)$', text, re.M))


# --- the test ----------------------------------------------------------------------------------------------------


def test_sessions_stick_to_one_replica_and_re_home_when_it_dies_with_nothing_lost(pg_admin_url, tmp_path):
    from conftest import served_crop_size

    size = served_crop_size()
    crop = np.random.default_rng(3).integers(0, 256, (size, size), dtype=np.uint8)
    kek = os.urandom(32).hex()
    with _throwaway_pg_database(pg_admin_url) as url:
        replicas: list[ServeProcess] = []
        proxy = None
        try:
            for n in range(1, 4):  # one after the other: the first migrates the database
                replicas.append(start_serve(tmp_path / f"r{n}", tmp_path / f"r{n}.log",
                                            ["--database-url", url, "--time-variants", "0", "--max-run-ms", "0"],
                                            env={**os.environ, "AFFECTLINE_KEK": kek}))
            proxy = HaProxy(replicas, tmp_path, tmp_path / "haproxy.log")
            transports = ([GrpcSessions(proxy.grpc_target) for _ in range(SESSIONS_PER_TRANSPORT)]
                          + [ConnectSessions(proxy.base) for _ in range(SESSIONS_PER_TRANSPORT)])
            runners = [SessionRunner(t, name=f"replica-{i}", crop=crop, batches=BATCHES, frames_per_batch=FRAMES,
                                     interval_s=INTERVAL_S, max_wait_s=30, start_delay_s=0.05 * i)
                       for i, t in enumerate(transports)]
            for r in runners:
                r.start()
            time.sleep(2.5)  # every session started and pushing
            ids = {r.session_id for r in runners}
            before = homes(session_routes(proxy), ids)
            pushes_before = {f"r{n}": push_count(rep) for n, rep in enumerate(replicas, 1)}
            load = defaultdict(list)
            for sid, servers in before.items():
                load[servers[0]].append(sid)
            victim = max(load, key=lambda s: len(load[s]))
            replicas[int(victim[1:]) - 1].kill()
            killed_at = time.monotonic()
            for r in runners:
                r.join(BATCHES * INTERVAL_S + 90)
                assert not r.is_alive(), f"{r.name} still running"
            after = homes(session_routes(proxy), ids)
            survivors = {f"r{n}": push_count(rep) for n, rep in enumerate(replicas, 1) if f"r{n}" != victim}
            check_runners(runners)
            t = tally(runners, url)
        finally:
            if proxy is not None:
                proxy.stop()
            for rep in replicas:
                rep.stop()
    moved = {sid: servers for sid, servers in after.items() if len(servers) > 1}
    re_homed_in = max((min(a for a in r.ack_times if a > killed_at) - killed_at for r in runners
                       if r.session_id in load[victim]), default=0.0)
    t.notes.update(sessions=len(runners), per_replica={s: len(v) for s, v in sorted(load.items())}, killed=victim,
                   re_homed={sid[:8]: "->".join(s) for sid, s in moved.items()},
                   retries=sum(r.sender.retries + r.resumes for r in runners),
                   duplicate_acks=sum(r.duplicate_acks for r in runners),
                   first_ack_after_kill_s=round(re_homed_in, 2))
    print("\n" + t.line("3 replicas behind HAProxy, one killed"))
    # Affinity while all lived: one replica per session, on both frontends.
    assert set(before) == ids and all(len(s) == 1 for s in before.values()), before
    assert {fe for fe, *_ in session_routes(proxy)} == {"http_in", "grpc_in"}
    assert sum(pushes_before.values()) >= len(ids)  # the replicas' own counters saw the pushes
    # Re-homing: exactly the victim's sessions moved, off the victim for good, onto survivors; the
    # others stayed. Until the health check marks the victim down, `option redispatch` may send a
    # retry to another survivor than the hash ring then settles on, so a session can hop twice.
    assert set(moved) == set(load[victim]) and load[victim], (moved, load)
    assert all(s[0] == victim and victim not in s[1:] and len(s) <= 3 for s in moved.values()), moved
    assert all(after[sid] == before[sid] for sid in ids - set(load[victim]))
    assert sum(survivors.values()) > sum(v for k, v in pushes_before.items() if k != victim)
    # Nothing lost, nothing twice.
    assert t.sent == t.acked == t.stored == len(runners) * BATCHES * FRAMES
    assert t.missing_acked == 0 and t.duplicated == 0
    assert all(r.summary_frames == BATCHES * FRAMES for r in runners)

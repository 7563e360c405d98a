"""`affectline loadtest --replicas`: the Locust suite through HAProxy against several replicas.

The end-to-end case runs 3 replicas for a few seconds (CI: 2 cores; the 1 -> 3 comparison is the
full run's, docs/scaling.md) and asserts that nothing
broke, not how fast it went: no failed request, every acknowledged frame stored (and counted by
the replica that stored it), every session's batches answered by exactly one replica (the
proxy's log and the replicas' own session counters), stored frames/s above zero. Skipped, with
the reason, when haproxy or PostgreSQL is missing. The other cases check the pieces offline.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from affectline.commands.haproxy import CONFIG, Route, render_config
from affectline.commands.loadtest import parse_replicas
from affectline.commands.replica_metrics import affinity

AFFECTLINE = [sys.executable, "-m", "affectline"]
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="haproxy not installed (scripts/system_deps.sh installs Debian's haproxy)")


@needs_haproxy
def test_three_replicas_behind_haproxy_lose_nothing_and_keep_affinity(pg_admin_url, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [*AFFECTLINE, "loadtest", "--replicas", "3", "--users", "6", "--spawn-rate", "6", "--duration", "6s",
         "--processes", "2", "--pg-admin-url", pg_admin_url.render_as_string(hide_password=False), "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False)
    print(result.stdout[-3000:])
    report = out / "replicas.json"
    assert report.is_file(), result.stdout[-4000:] + result.stderr[-3000:]
    runs = {r["replicas"]: r for r in json.loads(report.read_text())["runs"]}
    assert set(runs) == {3}
    for n, r in runs.items():
        assert r["errors"] == 0 and r["requests"] > 0, (n, r)
        assert r["frames_stored"] == r["frames_acked"] > 0, (n, r)
        assert sum(p["frames"] for p in r["per_replica"]) == r["frames_stored"], (n, r["per_replica"])
        assert len(r["per_replica"]) == n
        assert r["sessions"] > 0 and r["sessions_logged"] == r["sessions"] == r["sessions_served"], (n, r)
        assert r["sessions_on_several"] == {} and r["unpinned_calls"] == 0, (n, r)
        assert r["stored_fps"] > 0, (n, r)
        assert all(p["went_down"] == 0 for p in r["per_replica"]), (n, r["per_replica"])
        assert r["ok"] and all(r["checks"].values()), (n, r["checks"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert (out / "replicas.md").read_text().count("\n| 3 |") >= 1
    assert (out / "replicas-3" / "haproxy.log").is_file() and (out / "replicas-3" / "r3.log").is_file()


def test_config_is_rendered_for_n_replicas_from_the_shipped_file(tmp_path):
    template = CONFIG.read_text()
    for n in (1, 3, 5):
        text = render_config(template, n, tmp_path / "s.sock")
        servers = re.findall(r"^\s*server (r\d+) \"\$\{AFFECTLINE_R(\d+)_HOST\}:\$\{AFFECTLINE_R\2_(HTTP|GRPC)\}\"",
                             text, re.M)
        assert sorted(servers) == sorted([(f"r{i}", str(i), p) for i in range(1, n + 1) for p in ("HTTP", "GRPC")])
        assert f"stats socket {tmp_path / 's.sock'}" in text
        # Everything else is the shipped file: the hash on the session header, the affinity log line.
        assert text.count("balance hdr(x-affectline-session)") == 2 and "hash-type consistent" in text
        assert 'log-format "affinity %ft %b %s %ST %[capture.req.hdr(0)] %HP"' in text


def test_affinity_flags_a_session_on_two_replicas_and_calls_without_the_header():
    push = "/affectline.v1.SessionService/PushCrops"
    start, end = "/affectline.v1.SessionService/StartSession", "/affectline.v1.SessionService/EndSession"
    routes = [Route("grpc_in", "r1", 200, "a", push), Route("grpc_in", "r1", 200, "a", push),
              Route("http_in", "r2", 200, "b", push), Route("http_in", "r3", 200, "", start)]
    ok = affinity(routes, {"a", "b"})
    assert ok.ok and ok.logged == 2 and not ok.on_several and ok.unpinned_calls == 0
    moved = affinity([*routes, Route("grpc_in", "r3", 200, "a", end)], {"a", "b"})
    assert not moved.ok and moved.on_several == {"a": ["r1", "r3"]}
    unpinned = affinity([*routes, Route("http_in", "r2", 200, "", push)], {"a", "b"})
    assert not unpinned.ok and unpinned.unpinned_calls == 1
    assert not affinity(routes, {"a", "b", "c"}).ok  # a session the proxy never saw
    assert affinity([*routes, Route("grpc_in", "r2", 503, "a", push)], {"a", "b"}).ok  # a refused call answered nothing


def test_replica_counts_and_usage_errors():
    assert parse_replicas("1,3") == [1, 3] and parse_replicas("2") == [2]
    for bad in ("", "0", "1,x", "17"):
        with pytest.raises(ValueError):
            parse_replicas(bad)
    for args in (["--replicas", "1,3", "--host", "10.0.0.5"], ["--replicas", "1,3", "--shape", "ramp"],
                 ["--replicas", "0"]):
        result = subprocess.run([*AFFECTLINE, "loadtest", *args], capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 2 and "error" in result.stderr, (args, result.stderr)


def test_missing_postgresql_is_a_usage_error(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy not installed: the command stops at that check first")
    result = subprocess.run([*AFFECTLINE, "loadtest", "--replicas", "1", "--pg-admin-url",
                             "postgresql://postgres@127.0.0.1:1/postgres", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "needs PostgreSQL" in result.stderr, result.stderr


def test_docs_describe_the_command():
    text = (Path(__file__).resolve().parents[1] / "docs" / "load-testing.md").read_text()
    assert "--replicas" in text and "affectline_sessions_served_total" in text

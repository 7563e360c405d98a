"""`affectline loadtest --replicas 1,3`: the Locust suite against N replicas behind HAProxy, once per N.

For each replica count: a scratch PostgreSQL database, N `affectline serve` replicas on it (one
AFFECTLINE_KEK), HAProxy with the shipped config rendered for N servers, Locust headless through
the proxy (`--processes` for distributed Locust on this machine); then the replicas' /metrics, the
proxy's per-request log and the database give stored frames/s, frames per replica, stored == acked
and session affinity. Prints a table and the scaling ratio, writes replicas.json and replicas.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from affectline.commands.haproxy import HaProxy
from affectline.commands.loadtest import (CpuSampler, analyst_key, locust_command, progress, push_latency, read_acked,
                                          read_acked_sessions, read_final_stats, run_locust)
from affectline.commands.replica_metrics import RunSampler, affinity, load_average, scrape
from affectline.serve_process import ServeProcess, start_serve
from affectline.storage.timeline_store import open_store

# Same serving layout on every replica and every run: no start-up timing of model variants (a
# replica timed while another already serves would pick by noise) and no max-batch cap from it.
SERVE_ARGS = ("--time-variants", "0", "--max-run-ms", "0")
WARMUP_S = 5.0  # after the last user spawned, before the stored-frames/s window opens


@dataclass(frozen=True)
class ReplicaStats:
    name: str
    frames: int  # stored by this replica (its affectline_frames_total)
    sessions: int  # sessions it stored batches for (affectline_sessions_served_total)
    batch_calls: int  # PushCrops calls and StreamCrops streams it handled
    rpc_errors: int
    cores: float | None  # CPU it used over the stored-frames/s window
    went_down: int  # times HAProxy's health check marked it DOWN (either backend)


@dataclass
class RunResult:
    replicas: int
    users: int
    processes: int
    duration_s: int
    started_at: str
    load_before: str  # 1, 5, 15 min load averages
    load_after: str
    window_s: float  # the stored-frames/s window: from WARMUP_S after the last spawn to the end
    stored_fps: float  # from the database's frame count over the window
    acked_fps: float  # Locust's acked frames over the whole run (first to last request)
    frames_acked: int
    frames_stored: int
    batch_calls: int
    p50_ms: int
    p95_ms: int
    p99_ms: int
    requests: int
    errors: int  # failed Locust requests (every kind)
    sessions: int  # sessions with an acknowledged batch
    sessions_served: int  # the replicas' affectline_sessions_served_total, summed
    sessions_on_several: dict[str, list[str]]  # the proxy's log: sessions answered by two replicas or more
    sessions_logged: int  # sessions the proxy's log shows
    unpinned_calls: int  # session calls without x-affectline-session
    server_cores: float | None
    host_cores: float | None  # every process on the host, in cores
    per_replica: list[ReplicaStats] = field(default_factory=list)

    @property
    def checks(self) -> dict[str, bool]:
        return {
            "no errors": self.requests > 0 and self.errors == 0,
            "stored == acked": self.frames_stored == self.frames_acked > 0,
            "replicas' frames == stored": sum(r.frames for r in self.per_replica) == self.frames_stored,
            "affinity (proxy log)": (self.sessions > 0 and self.sessions_logged == self.sessions
                                     and not self.sessions_on_several and self.unpinned_calls == 0),
            "affinity (replicas' sessions)": self.sessions_served == self.sessions > 0,
            "no replica marked down": all(r.went_down == 0 for r in self.per_replica),
            "stored frames/s > 0": self.stored_fps > 0,
        }

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


# --- the stack: scratch database, replicas, proxy ------------------------------------------------------------


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new database on the server of `admin_url`, dropped afterwards (FORCE: even with connections left)."""
    import psycopg
    from sqlalchemy import make_url

    admin = make_url(admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"affectline_loadtest_{secrets.token_hex(6)}"
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def replicas_on(db_url: str, n: int, workdir: Path, logs: Path) -> Iterator[list[ServeProcess]]:
    """n servers on one database with one KEK (any can load any session), stopped with SIGTERM at the end."""
    env = {**os.environ, "AFFECTLINE_KEK": secrets.token_hex(32)}
    started: list[ServeProcess] = []
    try:
        for i in range(1, n + 1):  # one after the other: the first applies the migrations
            started.append(start_serve(workdir / f"r{i}", logs / f"r{i}.log", ["--database-url", db_url, *SERVE_ARGS],
                                       env=env))
            progress(f"  replica r{i} ready: gRPC {started[-1].grpc_target}, HTTP {started[-1].base}")
        yield started
    finally:
        for r in started:
            r.stop()


# --- one replica count ---------------------------------------------------------------------------------------


def request_span(stats_json: Path) -> tuple[float, float]:
    """(first request, last request) of the run, epoch seconds, from Locust's final stats."""
    entries = json.loads(stats_json.read_text())
    return min(e["start_time"] for e in entries), max(e["last_request_timestamp"] for e in entries)


def run_count(args: argparse.Namespace, n: int, duration_s: int, out: Path) -> RunResult:
    out.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = load_average()
    progress(f"{n} replica(s): load average {load_before}; scratch database on {args.pg_admin_url.rsplit('@', 1)[-1]}")
    stats_json = out / "locust_final.json"
    with tempfile.TemporaryDirectory(prefix="affectline-replicas-") as tmp, scratch_database(args.pg_admin_url) as db_url:
        with replicas_on(db_url, n, Path(tmp), out) as replicas:
            api_key = analyst_key(db_url)
            proxy = HaProxy(replicas, Path(tmp), out / "haproxy.log")
            try:
                progress(f"  haproxy ready, all {n} replica(s) UP: gRPC {proxy.grpc_target}, "
                         f"HTTP 127.0.0.1:{proxy.http_port}")
                cpus = [CpuSampler(r.proc.pid) for r in replicas]
                sampler = RunSampler(db_url)
                cmd = locust_command(args, duration_s=duration_s, host="127.0.0.1", grpc_port=proxy.grpc_port,
                                     http_port=proxy.http_port, out=out)
                progress(f"  locust: {args.users} users, {duration_s} s, {args.processes} process(es), through haproxy")
                t0 = time.time()
                code = run_locust(cmd, out, api_key)
                progress(f"  locust finished in {time.time() - t0:.0f} s (exit {code}; log {out / 'locust.log'})")
                sampler.stop()
                for c in cpus:
                    c.stop()
                counts = [scrape(r.base) for r in replicas]
                states = proxy.states()
                routes = proxy.routes()
            finally:
                proxy.stop()
            progress(f"  stopping {n} replica(s) (SIGTERM: in-flight batches are finished)")
        # Every replica has drained and exited: what the database holds now is all that was stored.
        with open_store(db_url) as store:
            stored = store.count_frames()
    if not stats_json.is_file():
        raise RuntimeError(f"locust wrote no stats; see {out / 'locust.log'}")
    first, last = request_span(stats_json)
    rate = args.spawn_rate or max(1.0, args.users / 5)
    w0, w1 = first + args.users / rate + min(WARMUP_S, duration_s / 5), last
    if sampler.frames_per_s(w0, w1) is None:  # a run too short for a steady window: the whole run
        w0 = first
    final = read_final_stats(stats_json)["Aggregated"]
    latency = push_latency(stats_json)
    acked, sessions = read_acked(out), read_acked_sessions(out)
    aff = affinity(routes, sessions)
    per_replica = [ReplicaStats(f"r{i}", c.frames, c.sessions, c.batch_calls, c.rpc_errors, cpu.cores(w0, w1),
                                sum(s.went_down for (_, srv), s in states.items() if srv == f"r{i}"))
                   for i, (c, cpu) in enumerate(zip(counts, cpus), 1)]
    cores = [r.cores for r in per_replica]
    host = sampler.host_cores(w0, w1)
    return RunResult(
        replicas=n, users=args.users, processes=args.processes, duration_s=duration_s, started_at=started_at,
        load_before=load_before, load_after=load_average(), window_s=round(w1 - w0, 1),
        stored_fps=round(sampler.frames_per_s(w0, w1) or 0.0, 1),
        acked_fps=round(acked.get("frames_acked", 0) / max(1e-9, last - first), 1),
        frames_acked=acked.get("frames_acked", 0), frames_stored=stored, batch_calls=latency.calls,
        p50_ms=latency.p50_ms, p95_ms=latency.p95_ms, p99_ms=latency.p99_ms,
        requests=int(final["Request Count"]), errors=int(final["Failure Count"]), sessions=len(sessions),
        sessions_served=sum(c.sessions for c in counts), sessions_on_several=aff.on_several,
        sessions_logged=aff.logged, unpinned_calls=aff.unpinned_calls,
        server_cores=None if None in cores else round(sum(c for c in cores if c is not None), 2),
        host_cores=None if host is None else round(host, 2), per_replica=per_replica)


# --- the report ----------------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def summary_rows(results: list[RunResult]) -> list[list[str]]:
    head = ["replicas", "users", "stored frames/s", "acked frames/s", "frames acked", "frames stored",
            "batch p50 / p99 ms", "errors", "sessions", "affinity", "server cores", "host cores",
            "load before / after", "result"]
    rows = [head]
    for r in results:
        c = r.checks
        rows.append([str(r.replicas), str(r.users), _f(r.stored_fps, ".1f"), _f(r.acked_fps, ".1f"),
                     f"{r.frames_acked:,}", f"{r.frames_stored:,}", f"{r.p50_ms} / {r.p99_ms}",
                     f"{r.errors}/{r.requests}", str(r.sessions),
                     "holds" if c["affinity (proxy log)"] and c["affinity (replicas' sessions)"] else "BROKEN",
                     _f(r.server_cores), _f(r.host_cores), f"{r.load_before.split()[0]} / {r.load_after.split()[0]}",
                     "PASS" if r.ok else "FAIL: " + ", ".join(k for k, v in c.items() if not v)])
    return rows


def replica_rows(results: list[RunResult]) -> list[list[str]]:
    rows = [["replicas", "replica", "frames stored", "share", "sessions", "batch calls", "rpc errors", "cores",
             "marked down"]]
    for r in results:
        for s in r.per_replica:
            share = s.frames / r.frames_stored if r.frames_stored else 0.0
            rows.append([str(r.replicas), s.name, f"{s.frames:,}", f"{share:.0%}", str(s.sessions),
                         f"{s.batch_calls:,}", str(s.rpc_errors), _f(s.cores), str(s.went_down)])
    return rows


def scaling_line(results: list[RunResult]) -> str | None:
    low, high = min(results, key=lambda r: r.replicas), max(results, key=lambda r: r.replicas)
    if low.replicas == high.replicas or not low.stored_fps:
        return None
    ratio = high.stored_fps / low.stored_fps
    return (f"scaling {low.replicas} -> {high.replicas} replicas: stored frames/s x{ratio:.2f} "
            f"({low.stored_fps:.1f} -> {high.stored_fps:.1f}, {os.cpu_count()} cores on this host)")


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i and c[:1].isdigit() else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown_table(rows: list[list[str]]) -> str:
    rule = "|" + "|".join(" ---: " if i else " --- " for i in range(len(rows[0]))) + "|"
    out = ["| " + " | ".join(rows[0]) + " |", rule]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def write_report(results: list[RunResult], args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    command = (f"affectline loadtest --replicas {args.replicas} --users {args.users} --duration {args.duration} "
               f"--processes {args.processes}")
    meta = {"command": command, "cores": os.cpu_count(), "fps": args.fps, "frames_per_batch": args.frames_per_batch,
            "mix": args.mix or os.environ.get("LOCUST_MIX") or "suite default"}
    json_path, md_path = out / "replicas.json", out / "replicas.md"
    scaling = scaling_line(results)
    runs = [{**asdict(r), "checks": r.checks, "ok": r.ok} for r in results]
    json_path.write_text(json.dumps({**meta, "scaling": scaling, "runs": runs}, indent=2))
    md_path.write_text("\n\n".join(filter(None, [
        f"# Multi-replica load test, {results[0].started_at}",
        f"`{meta['command']}` on {meta['cores']} cores; {args.fps:g} fps per session, {args.frames_per_batch} frames "
        f"per batch, mix: {meta['mix']}.",
        markdown_table(summary_rows(results)), markdown_table(replica_rows(results)), scaling])) + "\n")
    return json_path, md_path


def run(args: argparse.Namespace, counts: list[int], duration_s: int, out: Path) -> int:
    if shutil.which("haproxy") is None:
        print("affectline loadtest: error: --replicas needs haproxy on PATH (Debian: apt-get install haproxy; "
              "scripts/system_deps.sh installs it)", file=sys.stderr)
        return 2
    try:
        with scratch_database(args.pg_admin_url):
            pass
    except Exception as exc:  # noqa: BLE001 - any driver error: the server is not usable
        print(f"affectline loadtest: error: --replicas needs PostgreSQL at --pg-admin-url: {str(exc).strip()}",
              file=sys.stderr)
        return 2
    results: list[RunResult] = []
    try:
        for n in counts:
            results.append(run_count(args, n, duration_s, out / f"replicas-{n}"))
            r = results[-1]
            progress(f"{n} replica(s): {r.stored_fps:.1f} stored frames/s, p50 {r.p50_ms} / p99 {r.p99_ms} ms, "
                 f"{r.errors} errors, {'PASS' if r.ok else 'FAIL'}")
    except RuntimeError as exc:
        print(f"affectline loadtest: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if results:
            json_path, md_path = write_report(results, args, out)
            print("\n" + text_table(summary_rows(results)) + "\n\n" + text_table(replica_rows(results)))
            if line := scaling_line(results):
                print("\n" + line)
            print(f"\nresults: {json_path}  {md_path}  (per count: {out}/replicas-N/)")
    return 0 if all(r.ok for r in results) else 1

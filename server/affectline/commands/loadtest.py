"""`affectline loadtest`: one command for a Locust load with SLO checks.

Without --host it starts `affectline serve` on free loopback ports with a temporary SQLite
database, runs loadtest/locustfile.py headless against it, stops the server (finishing
in-flight batches), and then checks the SLOs from Locust's CSV stats, the users' ack counts
and the frames in the database. With --replicas it hands over to loadtest_replicas (N servers
on PostgreSQL behind HAProxy, once per replica count).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from affectline.serve_process import ServeProcess, start_serve

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
P99_SLO_MS = 100.0
STEPS = 10  # reporting steps per run (the ramp shape's plateaus)
# Locust rows that carry crop batches: native unary, gRPC-web unary and the bidi stream.
PUSH_ROWS = ("PushCrops", "grpc-web PushCrops", "StreamCrops")
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "loadtest", help="run the Locust load suite and check the SLOs (p99, failures, frames stored)",
        description="Runs loadtest/locustfile.py headless (viewers over gRPC and gRPC-web, bidi partners, "
        "analysts) and checks: p99 PushCrops latency < 100 ms, no failed requests, frames stored == frames "
        "acknowledged. Without --host it starts its own server on free loopback ports with a temporary "
        "SQLite database. Exit 0: all SLOs met; 1: an SLO failed; 2: usage error.",
    )
    p.add_argument("--users", type=int, default=20, help="peak concurrent users (default: 20)")
    p.add_argument("--duration", default="60s", help="run time, e.g. 30s, 5m (default: 60s)")
    p.add_argument("--spawn-rate", type=float, help="users started per second (default: users/5)")
    p.add_argument("--shape", choices=("steady", "ramp", "spike"), default="steady", help="load shape (default: steady)")
    p.add_argument("--host", help="an already running server's address (default: start one on 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="native gRPC port (with --host; default 50051)")
    p.add_argument("--http-port", type=int, help="HTTP port (with --host; default 8080)")
    p.add_argument("--database-url", help="with --host: that server's database, to count stored frames "
                   "(it must hold nothing else being written); without it that SLO is not checked")
    p.add_argument("--api-key", default=os.environ.get("AFFECTLINE_API_KEY"),
                   help="with --host: an analytics:read API key for the analysts (default: $AFFECTLINE_API_KEY); "
                   "without --host one is made in the started server's database")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per viewer (default: 30)")
    p.add_argument("--frames-per-batch", type=int, default=10, help="frames per PushCrops batch (default: 10)")
    p.add_argument("--processes", type=int, default=1, help="Locust load-generator processes (default: 1)")
    p.add_argument("--out", type=Path, help="folder for locust_*.csv, report.html, slo.json (default: a new temp folder)")
    p.add_argument("--mix", help="user weights, e.g. viewer=5,web=3,partner=2,analyst=1 (default: the suite's, "
                   "or $LOCUST_MIX)")
    g = p.add_argument_group(
        "replicas", "--replicas runs the same load once per replica count: that many servers on a scratch "
        "PostgreSQL database behind HAProxy (deploy/haproxy/haproxy.cfg, hashing x-affectline-session), and "
        "reports stored frames/s, latency, errors, frames per replica and session affinity; exit 1 when "
        "something broke (errors, stored != acked, a session on two replicas). Example: affectline loadtest "
        "--replicas 1,3 --users 30 --duration 60s --processes 2 --out /tmp/replicas")
    g.add_argument("--replicas", help="comma-separated replica counts, e.g. 1,3 (default: one server, no proxy)")
    g.add_argument("--pg-admin-url", default=os.environ.get("AFFECTLINE_LOADTEST_PG_URL", DEFAULT_PG_ADMIN_URL),
                   help="with --replicas: a PostgreSQL database to CREATE/DROP the scratch database from "
                   f"(default: $AFFECTLINE_LOADTEST_PG_URL or {DEFAULT_PG_ADMIN_URL})")
    return p


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    target: str
    ok: bool | None  # None: not checked


def parse_duration(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"bad --duration {text!r}; use e.g. 30s, 5m, 1h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def progress(msg: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_server(workdir: Path, log_path: Path) -> tuple[ServeProcess, str]:
    url = f"sqlite:///{workdir / 'loadtest.db'}"
    return start_serve(workdir, log_path, ["--database-url", url]), url


def analyst_key(db_url: str) -> str:
    """A new analytics:read key in the started server's database, for the analyst users."""
    from affectline.auth.issuing import issue_key
    from affectline.auth.scopes import ANALYTICS_READ
    from affectline.storage.api_key_store import ApiKeyStore
    from affectline.storage.database import make_engine

    engine = make_engine(db_url)
    try:
        return issue_key(ApiKeyStore(engine), "loadtest analysts", [ANALYTICS_READ]).token
    finally:
        engine.dispose()


def read_stats(csv_path: Path) -> dict[str, dict[str, str]]:
    """Rows of Locust's locust_stats.csv by name (the columns evaluate() reads)."""
    with csv_path.open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def _percentile(times: dict[int, int], n: int, p: float) -> int:
    # Locust's own rule (stats.calculate_response_time_percentile), not imported: importing
    # locust monkey-patches this process for gevent.
    processed = 0
    for t in sorted(times, reverse=True):
        processed += times[t]
        if n - processed <= int(n * p):
            return t
    return 0


def read_final_stats(json_path: Path) -> dict[str, dict[str, str]]:
    """The same rows as read_stats, from --json-file, which Locust writes after the last user stopped.

    The CSV is rewritten once a second while the run goes on, so it can miss the last second
    (the EndSession calls of every user); the JSON cannot.
    """
    rows: dict[str, dict[str, str]] = {}
    all_times: dict[int, int] = {}
    totals = {"n": 0, "fail": 0, "start": float("inf"), "end": 0.0}
    for e in json.loads(json_path.read_text()):
        times = {int(k): v for k, v in e["response_times"].items()}
        n, span = e["num_requests"], max(1e-9, e["last_request_timestamp"] - e["start_time"])
        rows[e["name"]] = {"Request Count": str(n), "Failure Count": str(e["num_failures"]), "Requests/s": str(n / span),
                           **{f"{q}%": str(_percentile(times, n, q / 100)) for q in (50, 95, 99)}}
        for t, c in times.items():
            all_times[t] = all_times.get(t, 0) + c
        totals["n"] += n
        totals["fail"] += e["num_failures"]
        totals["start"] = min(totals["start"], e["start_time"])
        totals["end"] = max(totals["end"], e["last_request_timestamp"])
    n = int(totals["n"])
    rows["Aggregated"] = {"Request Count": str(n), "Failure Count": str(int(totals["fail"])),
                          "Requests/s": str(n / max(1e-9, totals["end"] - totals["start"])),
                          **{f"{q}%": str(_percentile(all_times, n, q / 100)) for q in (50, 95, 99)}}
    return rows


@dataclass(frozen=True)
class PushLatency:
    """Every crop-batch call of a run together (the PUSH_ROWS), from Locust's final stats."""

    calls: int
    failures: int
    p50_ms: int
    p95_ms: int
    p99_ms: int


def push_latency(json_path: Path) -> PushLatency:
    times: dict[int, int] = {}
    calls = failures = 0
    for e in json.loads(json_path.read_text()):
        if e["name"] in PUSH_ROWS:
            for k, v in e["response_times"].items():
                times[int(k)] = times.get(int(k), 0) + v
            calls += e["num_requests"]
            failures += e["num_failures"]
    n = sum(times.values())
    return PushLatency(calls, failures, *(_percentile(times, n, q) for q in (0.5, 0.95, 0.99)))


def read_acked(folder: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    for path in folder.glob("acked-*.json"):
        for k, v in json.loads(path.read_text()).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


@dataclass(frozen=True)
class Step:
    users: int  # users pushing crops (viewers, partners, browsers) at the step's peak
    batches_per_s: float
    p50_ms: int
    p95_ms: int
    p99_ms: int
    failures: int
    server_cores: float | None  # CPU the server process used, in cores

    @property
    def ok(self) -> bool:
        return self.p99_ms < P99_SLO_MS and self.failures == 0


class CpuSampler:
    """Samples the server process's CPU time once a second (for CPU cost per frame)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(1.0):
            try:
                fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return
            self.samples.append((time.time(), (int(fields[11]) + int(fields[12])) / tick))

    def cores(self, t0: float, t1: float) -> float | None:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def stop(self) -> None:
        self._stop.set()


def read_acked_sessions(folder: Path) -> set[str]:
    """Ids of the sessions with at least one newly stored batch, over every Locust process."""
    ids: set[str] = set()
    for path in folder.glob("acked-*.json"):
        ids.update(json.loads(path.read_text()).get("sessions_acked_ids", []))
    return ids


def read_steps(folder: Path, cpu: CpuSampler | None) -> list[Step]:
    merged: dict[int, dict] = {}
    for path in folder.glob("steps-*.json"):
        users: dict[int, int] = {}  # this process's most pushing users per step
        for key, s in json.loads(path.read_text()).items():
            # Batches acked while the run stops fall past the last step: count them in it.
            k = min(int(key), STEPS - 1)
            m = merged.setdefault(k, {"ms": {}, "failures": 0, "users": 0, "t0": s["t0"], "t1": s["t1"]})
            for ms, c in s["ms"].items():
                m["ms"][int(ms)] = m["ms"].get(int(ms), 0) + c
            m["failures"] += s["failures"]
            users[k] = max(users.get(k, 0), s["users"])
            m["t0"], m["t1"] = min(m["t0"], s["t0"]), max(m["t1"], s["t1"])
        for k, n in users.items():  # processes run different users: add them up
            merged[k]["users"] += n
    steps = []
    for _, m in sorted(merged.items()):
        n = sum(m["ms"].values())
        span = max(1e-9, m["t1"] - m["t0"])
        steps.append(Step(m["users"], n / span, *(_percentile(m["ms"], n, q) for q in (0.5, 0.95, 0.99)),
                          m["failures"], cpu.cores(m["t0"], m["t1"]) if cpu else None))
    return steps


def print_steps(steps: list[Step], frames_per_batch: int, fps: float) -> None:
    print(f"\nper step ({fps:g} fps per session, {frames_per_batch} frames per batch):")
    print("sessions  batches/s  frames/s  p50  p95  p99 ms  failures  server cores  SLO")
    for s in steps:
        cores = f"{s.server_cores:.2f}" if s.server_cores is not None else "n/a"
        print(f"{s.users:8d}  {s.batches_per_s:9.1f}  {s.batches_per_s * frames_per_batch:8.0f}  {s.p50_ms:3d}  "
              f"{s.p95_ms:3d}  {s.p99_ms:6d}  {s.failures:8d}  {cores:>12}  {'PASS' if s.ok else 'FAIL'}")
    # Conservative: the highest load with every step up to it within the SLO.
    passing = list(itertools.takewhile(lambda s: s.ok, steps))
    if passing:
        best = passing[-1]
        print(f"capacity: {best.users} sessions at {fps:g} fps within the SLO "
              f"({best.batches_per_s * frames_per_batch:.0f} frames/s)")


def evaluate(stats: dict[str, dict[str, str]], acked: int, stored: int | None) -> list[Check]:
    checks = []
    for name in PUSH_ROWS:
        row = stats.get(name)
        if row and int(row["Request Count"]):
            p99 = float(row["99%"])
            checks.append(Check(f"p99 {name}", f"{p99:.0f} ms (p50 {row['50%']}, p95 {row['95%']}; "
                                f"{float(row['Requests/s']):.1f}/s)", f"< {P99_SLO_MS:.0f} ms", p99 < P99_SLO_MS))
    if not checks:
        checks.append(Check("p99 PushCrops", "no PushCrops requests", f"< {P99_SLO_MS:.0f} ms", False))
    total = stats.get("Aggregated", {})
    requests, failures = int(total.get("Request Count", 0)), int(total.get("Failure Count", 0))
    checks.append(Check("failure ratio", f"{failures}/{requests}", "0", requests > 0 and failures == 0))
    checks.append(Check("frames stored == acked", f"{stored if stored is not None else 'n/a'} / {acked}",
                        "equal", None if stored is None else (stored == acked and acked > 0)))
    return checks


def print_table(checks: list[Check]) -> None:
    rows = [("SLO", "measured", "target", "result")] + [
        (c.name, c.value, c.target, {True: "PASS", False: "FAIL", None: "n/a"}[c.ok]) for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def locust_command(args: argparse.Namespace, *, duration_s: int, host: str, grpc_port: int, http_port: int,
                   out: Path) -> list[str]:
    """The headless Locust command line for this run's options, its files written into `out`."""
    rate = args.spawn_rate or max(1.0, args.users / 5)
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "-u", str(args.users), "-r", str(rate), "-t", f"{duration_s}s", "--stop-timeout", "10",
           "--host", f"http://{host}:{http_port}", "--grpc-target", f"{host}:{grpc_port}",
           "--shape", args.shape, "--fps", str(args.fps), "--frames-per-batch", str(args.frames_per_batch),
           "--video-id", f"loadtest-{int(time.time())}", "--step-seconds", str(duration_s / STEPS), "--acked-dir", str(out),
           "--csv", str(out / "locust"), "--json-file", str(out / "locust_final"), "--html", str(out / "report.html"),
           "--loglevel", os.environ.get("AFFECTLINE_LOADTEST_LOGLEVEL", "INFO")]
    if args.mix:
        cmd += ["--mix", args.mix]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    return cmd


def run_locust(cmd: list[str], out: Path, api_key: str) -> int:
    """Runs Locust to the end, its output into out/locust.log (tracebacks and errors echoed); its exit status."""
    for old in [*out.glob("acked-*.json"), *out.glob("steps-*.json")]:
        old.unlink()
    locust = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "AFFECTLINE_API_KEY": api_key})
    assert locust.stdout is not None
    with (out / "locust.log").open("w") as log:
        for line in locust.stdout:
            log.write(line)
            if "Traceback" in line or "Error" in line:
                print(f"  locust: {line.rstrip()}", flush=True)
    return locust.wait()


def parse_replicas(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= 16 for n in counts):
        raise ValueError(f"bad --replicas {text!r}; use replica counts from 1 to 16, e.g. 1,3")
    return counts


def run(args: argparse.Namespace) -> int:
    try:
        duration_s = parse_duration(args.duration)
        if args.users < 1 or args.processes < 1 or args.fps <= 0 or args.frames_per_batch < 1:
            raise ValueError("--users, --processes, --fps and --frames-per-batch must be positive")
        if not args.host and (args.grpc_port or args.http_port or args.database_url):
            raise ValueError("--grpc-port/--http-port/--database-url go with --host (without it a server is started)")
        if args.replicas:
            parse_replicas(args.replicas)
            if args.host or args.shape != "steady":
                raise ValueError("--replicas starts its own servers and runs the steady shape (no --host, --shape)")
        if args.host and not args.api_key:
            raise ValueError("with --host the analysts need an analytics:read key: --api-key or AFFECTLINE_API_KEY "
                             "(`affectline keys create --name loadtest --scope analytics:read`)")
    except ValueError as exc:
        print(f"affectline loadtest: error: {exc}", file=sys.stderr)
        return 2
    if not LOCUSTFILE.is_file() or shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
        print(f"affectline loadtest: error: needs {LOCUSTFILE} and Locust (pip install -e '.[loadtest]')",
              file=sys.stderr)
        return 2

    out = (args.out or Path(tempfile.mkdtemp(prefix="affectline-loadtest-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.replicas:
        from affectline.commands import loadtest_replicas

        return loadtest_replicas.run(args, parse_replicas(args.replicas), duration_s, out)
    server: ServeProcess | None = None
    cpu: CpuSampler | None = None
    workdir = tempfile.TemporaryDirectory(prefix="affectline-loadtest-db-")
    try:
        if args.host:
            host, grpc_port, http_port, db_url = args.host, args.grpc_port or 50051, args.http_port or 8080, args.database_url
            api_key = args.api_key
        else:
            progress("starting affectline serve (temporary SQLite database) ...")
            server, db_url = start_server(Path(workdir.name), out / "server.log")
            grpc_port, http_port = server.grpc_port, server.http_port
            host = "127.0.0.1"
            cpu = CpuSampler(server.proc.pid)
            api_key = analyst_key(db_url)
            progress(f"server ready: gRPC {host}:{grpc_port}, HTTP {host}:{http_port} (log: {out / 'server.log'})")

        cmd = locust_command(args, duration_s=duration_s, host=host, grpc_port=grpc_port, http_port=http_port, out=out)
        progress(f"locust: {args.users} users, shape {args.shape}, {duration_s} s, {args.fps:g} fps x "
             f"{args.frames_per_batch} frames/batch, {args.processes} process(es)")
        started = time.monotonic()
        code = run_locust(cmd, out, api_key)
        progress(f"locust finished in {time.monotonic() - started:.0f} s (exit {code}; log {out / 'locust.log'})")
        if cpu is not None:
            cpu.stop()
        if server is not None:
            progress("stopping the server (finishes in-flight batches) ...")
            progress(f"server exited with {server.stop()}")
            server = None

        stats_csv, stats_json = out / "locust_stats.csv", out / "locust_final.json"
        if not stats_json.is_file():
            print(f"affectline loadtest: locust wrote no stats; see {out / 'locust.log'}", file=sys.stderr)
            return 1
        acked = read_acked(out)
        stored = None
        if db_url:
            from affectline.storage.timeline_store import open_store

            with open_store(db_url) as store:
                stored = store.count_frames()
        checks = evaluate(read_final_stats(stats_json), acked.get("frames_acked", 0), stored)
        steps = read_steps(out, cpu)
        (out / "slo.json").write_text(json.dumps({"checks": [c.__dict__ for c in checks], "acked": acked,
                                                  "frames_stored": stored, "steps": [s.__dict__ for s in steps]},
                                                 indent=2))
        if args.shape != "steady":
            print_steps(steps, args.frames_per_batch, args.fps)
        print()
        print_table(checks)
        print(f"\nreport: {out / 'report.html'}  stats: {stats_csv}  final stats: {stats_json}  SLOs: {out / 'slo.json'}")
        return 0 if all(c.ok is not False for c in checks) else 1
    except RuntimeError as exc:
        print(f"affectline loadtest: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        workdir.cleanup()

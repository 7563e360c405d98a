"""Where the CPU goes under a paced load: the server's threads, the clients, and the server's own timings.

    .venv/bin/python scripts/serving_cpu_probe.py [--sessions 24 28] [--seconds 12] [--server-arg=--max-batch-size=16 ...]

Starts `affectline serve` (SQLite in a temp dir, like the benchmark), then for each session count
runs the benchmark's paced 30-fps sessions (real handshake, encryption, 10-frame PushCrops; two
client processes) and prints:

- client-side latency (p50/p95/p99) and acknowledged frames/s, as the benchmark does;
- from the server's /metrics, over the step: model runs, mean crops per run, mean wall time per
  run and per crop, mean batcher queue delay, mean group-commit time;
- from /proc, over a window inside the step's steady state: CPU of the server process and of the
  client processes (cores and microseconds per acknowledged frame), and the busiest server
  threads (the event loop is the main thread; the two busiest are usually the inference workers).

It answers "is the model or the work around it short of CPU" without a profiler: the benchmark's
ratio to the ceiling is bounded by model CPU per frame / total CPU per frame. Figures are for
docs/performance.md; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from affectline.bench.__main__ import load_faces, percentile, run_load
from affectline.bench.sessions import LoadSpec
from affectline.serve_process import start_serve

_TICK = os.sysconf("SC_CLK_TCK")
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def cpu_seconds(stat_line: str) -> float:
    """user + system CPU seconds from a /proc/<pid>/stat (or task) line."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name{labels}": value} (comments skipped)."""
    values = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m and not line.startswith("#"):
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


@dataclass
class Snapshot:
    at: float
    server: float
    threads: dict[int, float]
    clients: dict[int, float]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def snapshot(server_pid: int) -> Snapshot:
    threads = {}
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        line = _read(f"/proc/{server_pid}/task/{tid}/stat")
        if line:
            threads[int(tid)] = cpu_seconds(line)
    clients = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == server_pid:
            continue
        line = _read(f"/proc/{entry}/stat")
        if line and int(line.rsplit(")", 1)[1].split()[1]) == me:  # our children: the client processes
            clients[int(entry)] = cpu_seconds(line)
    server = cpu_seconds(_read(f"/proc/{server_pid}/stat") or "")
    return Snapshot(time.perf_counter(), server, threads, clients)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="see docs/performance.md")
    p.add_argument("--sessions", type=int, nargs="+", default=[24], help="session counts, one step each (default: 24)")
    p.add_argument("--seconds", type=float, default=12.0, help="seconds per step (default: %(default)s)")
    p.add_argument("--clients", type=int, default=2, help="client processes (default: %(default)s)")
    p.add_argument("--model", default="affectline-vgg", help="registered model (default: %(default)s)")
    p.add_argument("--server-arg", action="append", default=[], help="extra `affectline serve` argument (repeatable)")
    args = p.parse_args(argv)
    if args.seconds < 2:
        p.error("--seconds must be >= 2 (the CPU window starts 1 s into the step and ends 0.5 s before it ends)")

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        try:
            server = start_serve(tmp, tmp / "server.log", ["--model", args.model, *args.server_arg], timeout_s=120)
        except RuntimeError as exc:
            print(f"error: server did not start: {exc}\n{(tmp / 'server.log').read_text()}", file=sys.stderr)
            return 1
        try:
            for line in (tmp / "server.log").read_text().splitlines():
                if "timed on this machine" in line or "max_run_ms" in line or "serving:" in line:
                    print("server:", line.split(" affectline: ", 1)[-1])
            url = f"http://127.0.0.1:{server.http_port}/metrics"
            faces, source = load_faces(48)
            print(f"crops: {source}")
            for n in args.sessions:
                _step(n, args, server.proc.pid, server.grpc_target, url, faces)
        finally:
            server.stop()
    return 0


def _step(n: int, args: argparse.Namespace, pid: int, target: str, url: str, faces) -> None:  # type: ignore[no-untyped-def]
    before = parse_metrics(urllib.request.urlopen(url).read().decode())
    snaps: list[Snapshot] = []

    def sample() -> None:  # the clients take ~1-2 s to start; the window skips that and the end
        time.sleep(2.5)
        snaps.append(snapshot(pid))
        time.sleep(max(0.5, args.seconds - 2.0))
        snaps.append(snapshot(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = run_load(LoadSpec(target=target, sessions=n, duration_s=args.seconds), args.clients, faces)
    sampler.join()
    after = parse_metrics(urllib.request.urlopen(url).read().decode())

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    runs = delta("affectline_inference_duration_seconds_count")
    crops = delta("affectline_inference_batch_size_sum")
    run_s = delta("affectline_inference_duration_seconds_sum")
    queue_s = delta("affectline_inference_queue_delay_seconds_sum")
    commits = delta("affectline_db_write_duration_seconds_count")
    fps = result.steady_fps
    lat = result.latencies_s
    print(f"{n} sessions: {fps:,.0f} frames/s acked, latency p50 {percentile(lat, 50) * 1000:.0f} / "
          f"p95 {percentile(lat, 95) * 1000:.0f} / p99 {percentile(lat, 99) * 1000:.0f} ms, errors {result.errors or 0}")
    print(f"  server: {runs:.0f} model runs, {crops / max(runs, 1):.1f} crops/run, {run_s / max(runs, 1) * 1000:.1f} ms/run "
          f"= {run_s / max(crops, 1) * 1000:.3f} ms/crop (wall); queue delay "
          f"{queue_s / max(delta('affectline_inference_queue_delay_seconds_count'), 1) * 1000:.1f} ms; group commit "
          f"{delta('affectline_db_write_duration_seconds_sum') / max(commits, 1) * 1000:.1f} ms")
    if len(snaps) == 2 and fps > 0:
        a, b = snaps
        window = b.at - a.at
        server_cores = (b.server - a.server) / window
        client_cores = sum(b.clients[k] - a.clients[k] for k in b.clients if k in a.clients) / window
        busiest = sorted(b.threads, key=lambda t: a.threads.get(t, 0.0) - b.threads[t])[:5]
        threads = ", ".join(f"{'main' if t == pid else t} {(b.threads[t] - a.threads.get(t, 0.0)) / window:.2f}"
                            for t in busiest)
        print(f"  CPU over {window:.1f} s: server {server_cores:.2f} cores ({server_cores / fps * 1e6:,.0f} us/frame), "
              f"clients {client_cores:.2f} cores ({client_cores / fps * 1e6:,.0f} us/frame); busiest server threads "
              f"(cores): {threads}")


if __name__ == "__main__":
    sys.exit(main())

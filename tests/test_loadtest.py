"""`affectline loadtest`: the Locust suite end to end, plus the SLO logic on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from affectline.loadtest_cli import Check, evaluate, parse_duration

AFFECTLINE = [sys.executable, "-m", "affectline"]


def busy_cores(seconds: float = 3.0) -> float:
    """CPU cores busy machine-wide over `seconds` (/proc/stat), before our load starts."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def test_smoke_load_meets_the_slos(tmp_path):
    """12 mixed users (gRPC, bidi, gRPC-web, analysts) for 30 s against a server the command starts.

    Sessions at 30 fps, 10-frame batches (the defaults). The correctness SLOs (no failures,
    frames stored == acked) are always asserted; the latency SLO is reported as xfail instead
    when other jobs already kept the cores busy before the load started (seen here: a model
    training on 1.5-2 of 2 cores), since the verdict would then be about them.
    """
    out = tmp_path / "out"
    busy_before = busy_cores()
    load_before = os.getloadavg()[0]  # runnable tasks over the last minute: catches bursty neighbours
    result = subprocess.run(
        [*AFFECTLINE, "loadtest", "--users", "12", "--duration", "30s", "--out", str(out)],
        capture_output=True, text=True, timeout=150, check=False,
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("SLO ") for line in lines), result.stdout[-4000:] + result.stderr[-2000:]
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("SLO ")):]
    rows = {slo: next(line for line in table if line.startswith(slo + " ")).rstrip()
            for slo in ("p99 PushCrops", "p99 grpc-web PushCrops", "p99 StreamCrops", "failure ratio",
                        "frames stored == acked")}
    # Correctness SLOs hold on any machine.
    assert rows["failure ratio"].endswith("PASS") and rows["frames stored == acked"].endswith("PASS"), table
    latency = [row for name, row in rows.items() if name.startswith("p99")]
    cores = os.cpu_count() or 1
    if result.returncode == 1 and (busy_before > 0.5 * cores or load_before > cores):
        # Other jobs held the cores before we started (measured above): the server's model runs
        # then wait for CPU, and a latency verdict would be about them, not about Affectline.
        pytest.xfail(f"{busy_before:.1f} of {cores} cores busy, load average {load_before:.1f} before the load; "
                     f"latency: {latency}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert all(row.endswith("PASS") for row in latency), latency
    assert (out / "report.html").is_file() and (out / "locust_stats.csv").is_file()
    slo = json.loads((out / "slo.json").read_text())
    assert slo["frames_stored"] == slo["acked"]["frames_acked"] > 0
    assert slo["acked"]["sessions_started"] == slo["acked"]["sessions_ended"] > 0
    final = {e["name"] for e in json.loads((out / "locust_final.json").read_text())}
    assert {"StartSession", "GetVideoTimeline", "grpc-web EndSession", "EndSession", "StreamCrops"} <= final


def _stats(p99: float, failures: int = 0) -> dict[str, dict[str, str]]:
    row = {"Request Count": "100", "Failure Count": str(failures), "50%": "20", "95%": "40", "99%": str(p99),
           "Requests/s": "30"}
    return {"PushCrops": row, "Aggregated": row}


def test_slo_evaluation():
    ok = evaluate(_stats(80), acked=500, stored=500)
    assert [c.ok for c in ok] == [True, True, True]
    assert [c.ok for c in evaluate(_stats(120), 500, 500)] == [False, True, True]
    assert [c.ok for c in evaluate(_stats(80, failures=1), 500, 500)] == [True, False, True]
    assert [c.ok for c in evaluate(_stats(80), 500, 510)] == [True, True, False]
    assert evaluate(_stats(80), 500, None)[-1] == Check("frames stored == acked", "n/a / 500", "equal", None)


@pytest.mark.parametrize("args", [["--duration", "soon"], ["--users", "0"], ["--grpc-port", "1"]])
def test_usage_errors_exit_2(args):
    result = subprocess.run([*AFFECTLINE, "loadtest", *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "error" in result.stderr


def test_parse_duration():
    assert (parse_duration("30s"), parse_duration("2m"), parse_duration("45")) == (30, 120, 45)

"""`affectline loadtest`: the Locust suite end to end, plus the SLO logic on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from affectline.commands.loadtest import Check, evaluate, parse_duration

AFFECTLINE = [sys.executable, "-m", "affectline"]


def test_smoke_load_holds_the_correctness_slos_and_reports_latency(tmp_path):
    """12 mixed users (gRPC, bidi, gRPC-web, analysts) for 15 s against a server the command starts.

    Sessions at 30 fps, 10-frame batches (the defaults). The correctness SLOs (no failures,
    frames stored == acked) hold on any machine and are asserted. The p99 latency verdicts are
    speed, which ground rule 5 leaves to benchmarks: on a slow or shared 2-core VM 12 users
    reached p99 110 ms (session 7) while the same code passes elsewhere, so the test checks
    that they are measured and that the exit code agrees with the table, not that they pass.
    """
    out = tmp_path / "out"
    result = subprocess.run(
        [*AFFECTLINE, "loadtest", "--users", "12", "--duration", "15s", "--out", str(out)],
        capture_output=True, text=True, timeout=150, check=False,
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("SLO ") for line in lines), result.stdout[-4000:] + result.stderr[-2000:]
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("SLO ")):]
    rows = {slo: next(line for line in table if line.startswith(slo + " ")).rstrip()
            for slo in ("p99 PushCrops", "p99 grpc-web PushCrops", "p99 StreamCrops", "failure ratio",
                        "frames stored == acked")}
    assert rows["failure ratio"].endswith("PASS") and rows["frames stored == acked"].endswith("PASS"), table
    latency = {name: row for name, row in rows.items() if name.startswith("p99")}
    for row in latency.values():
        assert " ms (p50 " in row and row.endswith(("PASS", "FAIL")), row  # measured, with a verdict
    any_failed = any(row.endswith("FAIL") for row in rows.values())
    assert result.returncode == (1 if any_failed else 0), result.stdout[-4000:] + result.stderr[-2000:]
    if any_failed:
        print(f"latency over the SLO on this machine (reported, not asserted): {list(latency.values())}")
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

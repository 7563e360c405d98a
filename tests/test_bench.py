"""The benchmark runs end to end (its figures are not asserted: speed is for benchmarks)."""

import subprocess
import sys


def test_bench_smoke_run_stores_every_acked_frame():
    result = subprocess.run(
        [sys.executable, "-m", "affectline.bench", "--duration", "2", "--clients", "1",
         "--saturate-sessions", "4", "--capacity-steps", "4"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("raw ceiling", "serving, saturated", "% of ceiling", "capacity at 30 fps", "(all acked frames stored)"):
        assert line in result.stdout

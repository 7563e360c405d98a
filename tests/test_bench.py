"""The benchmark runs end to end (its figures are not asserted: speed is for benchmarks)."""

import subprocess
import sys

import pytest


# The stream transport's acks and storage are covered by tests/test_api_roundtrip.py's bidi test.
@pytest.mark.parametrize("transport", ["unary", pytest.param("stream", marks=pytest.mark.slow)])
def test_bench_smoke_run_stores_every_acked_frame(transport):
    result = subprocess.run(
        [sys.executable, "-m", "affectline.bench", "--duration", "2", "--clients", "1",
         "--saturate-sessions", "4", "--capacity-steps", "4",
         "--repeats", "1", "--ceiling-seconds", "0.2", "--transport", transport],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{transport} calls" in result.stdout
    for line in ("raw ceiling", "1 session", "sessions x 1 thread", "serving, saturated", "% of ceiling", "timed around it", "capacity at 30 fps", "(all acked frames stored)"):
        assert line in result.stdout


def test_capacity_steps_auto_spans_30_to_100_percent_of_what_the_ceiling_can_feed():
    from affectline.bench.__main__ import capacity_steps

    assert capacity_steps("auto", 3000.0) == [30, 40, 50, 60, 70, 80, 90, 100]
    assert capacity_steps("auto", 60.0) == [1, 2]  # tiny ceilings still give distinct steps >= 1
    assert capacity_steps("5,10", 3000.0) == [5, 10]


def test_median_step_takes_the_median_p99_run_but_keeps_every_runs_errors():
    from affectline.bench.__main__ import median_step, percentile
    from affectline.bench.sessions import LoadResult

    fast = LoadResult([0.01] * 100, 1000, 1000, {}, 10.0)
    middle = LoadResult([0.05] * 100, 1000, 1000, {}, 10.0, warmup_latencies_s=[0.2], steady_frames=800, steady_s=8.0)
    slow = LoadResult([0.5] * 100, 1000, 990, {"UNAVAILABLE": 1}, 10.0)
    step = median_step([slow, fast, middle])
    assert percentile(step.latencies_s, 99) == 0.05
    assert step.errors == {"UNAVAILABLE": 1}
    assert step.frames_sent - step.frames_acked == 10
    assert (step.steady_fps, step.warmup_latencies_s) == (100.0, [0.2])  # the chosen run's steady figures
    lossy_median = LoadResult([0.05] * 100, 1000, 995, {}, 10.0)
    step = median_step([fast, lossy_median, slow])
    assert step.frames_sent - step.frames_acked == 15  # 5 of the chosen run + 10 of another, each once


@pytest.mark.slow  # a bench option for tuning; the serving path itself is covered by the smoke run
def test_sweep_serves_each_setting_without_errors():
    result = subprocess.run(
        [sys.executable, "-m", "affectline.bench", "--sweep", "--duration", "2", "--clients", "1",
         "--sweep-sessions", "3", "--sweep-batch-sizes", "8,16", "--sweep-delays", "2"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("8", "2"), ("16", "2")]
    for row in rows:
        assert float(row[2].replace(",", "")) > 0 and row[6] == "0", result.stdout


def test_a_steps_warm_up_is_counted_but_kept_out_of_steady_latency_and_rate():
    """A short paced run against a real server: every acked frame is counted; the warm-up's
    batches are not in the steady percentiles, and the steady rate is over the steady window."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from affectline.bench.__main__ import run_load, served
    from affectline.bench.sessions import LoadSpec

    faces = np.random.default_rng(0).integers(0, 255, (8, 48, 48), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp, served("affectline-vgg", [], tmp) as target:
        r = run_load(LoadSpec(target, 2, 3.0, warmup_s=1.0), 1, faces)
    # 2 sessions x 3 batches/s: ~6 batches in the first second, ~12 after it
    assert r.warmup_latencies_s and r.latencies_s
    assert len(r.warmup_latencies_s) + len(r.latencies_s) == r.frames_acked // 10
    assert r.steady_frames == 10 * len(r.latencies_s)
    assert r.steady_s == pytest.approx(2.0)
    assert r.steady_fps == pytest.approx(r.steady_frames / 2.0)


def test_session_phases_are_repeatable_and_spread_over_the_whole_period():
    from affectline.bench.sessions import session_phase

    phases = [session_phase(i) for i in range(30)]
    assert phases == [session_phase(i) for i in range(30)]
    assert all(0 <= p < 1 for p in phases)
    # a step of 30 sessions uses the whole period, not its first 30/97
    assert sum(p >= 0.5 for p in phases) >= 8 and max(phases) > 0.9


def test_bisect_next_halves_the_gap_between_the_last_pass_and_the_first_failure():
    from affectline.bench.__main__ import bisect_next

    assert bisect_next(115, 138) == 126
    assert bisect_next(126, 138) == 132
    assert bisect_next(0, 30) == 15  # even the first step failed
    assert bisect_next(131, 132) is None  # adjacent: nothing left to refine
    assert bisect_next(230, None) is None  # nothing failed: no upper bound


def test_ceiling_timings_compare_each_step_with_the_timings_around_it():
    from affectline.bench.__main__ import CeilingTimings

    later = iter([2000.0, 3000.0, 1000.0])
    timings = CeilingTimings(2500.0, lambda: next(later))
    assert timings.retime() == 2500.0  # before 2,500, after 2,000: the higher
    assert timings.retime() == 3000.0  # before 2,000, after 3,000
    assert timings.retime() == 3000.0  # before 3,000, after 1,000
    assert timings.timings == [2500.0, 2000.0, 3000.0, 1000.0]
    assert timings.highest == 3000.0  # the run-wide conservative ceiling


def test_server_arg_value_reads_both_spellings():
    from affectline.bench.__main__ import server_arg_value

    assert server_arg_value(["--inference-workers=1", "--model-variant=fp32"], "--model-variant") == "fp32"
    assert server_arg_value(["--model-variant", "int8"], "--model-variant") == "int8"
    assert server_arg_value(["--model-variant-x=1"], "--model-variant") is None
    assert server_arg_value([], "--model-variant") is None

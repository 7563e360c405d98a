"""Time-aware EMA smoothing, on small exact examples."""

import math

import pytest

from affectline.inference.smoothing import EmaState, SmoothingConfig, smooth_batch, smooth_step

CFG = SmoothingConfig(tau_ms=100.0, reset_after_ms=1000)


def test_first_frame_passes_through():
    assert smooth_step(EmaState(), 0, (0.2, 0.8), CFG) == (0.2, 0.8)


def test_alpha_follows_elapsed_video_time():
    state = EmaState()
    smooth_step(state, 0, (0.0, 1.0), CFG)
    out = smooth_step(state, 100, (1.0, 0.0), CFG)  # dt = tau: alpha = 1 - 1/e
    a = 1 - math.exp(-1)
    assert out == pytest.approx((a, 1 - a))


def test_rate_independence_two_half_steps_equal_one_full_step():
    one, two = EmaState(), EmaState()
    smooth_step(one, 0, (0.0,), CFG)
    smooth_step(two, 0, (0.0,), CFG)
    full = smooth_step(one, 66, (1.0,), CFG)
    smooth_step(two, 33, (1.0,), CFG)
    half = smooth_step(two, 66, (1.0,), CFG)
    assert full == pytest.approx(half)


@pytest.mark.parametrize("t", [-1, 1500], ids=["seek-back", "long-gap"])
def test_seek_or_gap_restarts(t):
    state = EmaState()
    smooth_step(state, 0, (0.0,), CFG)
    assert smooth_step(state, t, (1.0,), CFG) == (1.0,)


def test_none_disables():
    cfg = SmoothingConfig.parse("none")
    state = EmaState()
    smooth_step(state, 0, (0.0,), cfg)
    assert smooth_step(state, 10, (1.0,), cfg) == (1.0,)


def test_parse():
    assert SmoothingConfig.parse("ema:200").tau_ms == 200.0
    for bad in ("ema", "ema:-1", "kalman:3"):
        with pytest.raises(ValueError):
            SmoothingConfig.parse(bad)


def test_batch_equals_frame_by_frame():
    # seek back at 40, long gap at 3000: the batch path must reset exactly where the step path does
    times = [0, 33, 66, 40, 73, 3000, 3033]
    rows = [(0.1 * i, 1 - 0.1 * i) for i in range(len(times))]
    one_by_one, batched = EmaState(), EmaState()
    expected = [smooth_step(one_by_one, t, p, CFG) for t, p in zip(times, rows)]
    assert smooth_batch(batched, times, rows, CFG) == expected
    assert (batched.probs, batched.last_time_ms) == (one_by_one.probs, one_by_one.last_time_ms)


def test_batch_continues_from_the_previous_batch():
    state = EmaState()
    smooth_batch(state, [0], [(0.0, 1.0)], CFG)
    (out,) = smooth_batch(state, [100], [(1.0, 0.0)], CFG)
    a = 1 - math.exp(-1)
    assert out == pytest.approx((a, 1 - a))

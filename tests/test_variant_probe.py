"""Timing the variants on this machine (affectline.inference.variant_probe)."""

import numpy as np
import pytest

from affectline.inference.variant_probe import fastest, time_variants


class FakeClock:
    """A clock that each fake model run advances by its own cost: exact rates, no sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def run_costing(self, seconds_per_crop: float):
        calls = []

        def run(crops: np.ndarray) -> None:
            calls.append(len(crops))
            self.now += seconds_per_crop * len(crops)

        return run, calls


def test_time_variants_reports_crops_per_second_of_each_run_after_a_warm_up_call():
    clock = FakeClock()
    fast, fast_calls = clock.run_costing(0.001)
    slow, slow_calls = clock.run_costing(0.004)
    rates = time_variants({"int8": fast, "fp32": slow}, np.zeros((32, 4, 4), np.uint8), rounds=3, clock=clock)
    assert rates == pytest.approx({"int8": 1000.0, "fp32": 250.0})
    assert fast_calls == slow_calls == [32] * 4  # one warm-up + three timed rounds


def test_time_variants_takes_the_median_round():
    clock = FakeClock()
    costs = iter([0.0, 0.001, 0.010, 0.001])  # warm-up, then one slow round among three

    def run(crops: np.ndarray) -> None:
        clock.now += next(costs) * len(crops)

    assert time_variants({"int8": run}, np.zeros((10, 2, 2), np.uint8), rounds=3, clock=clock) == pytest.approx({"int8": 1000.0})


def test_rounds_must_be_positive():
    with pytest.raises(ValueError, match="rounds"):
        time_variants({}, np.zeros((1, 1, 1), np.uint8), rounds=0)


def test_fastest_keeps_the_preferred_variant_within_the_margin():
    assert fastest({"int8": 1000, "fp32": 1080}, preferred="int8") == "int8"
    assert fastest({"int8": 1000, "fp32": 1120}, preferred="int8") == "fp32"
    assert fastest({"int8": 1000, "fp32": 1120}) == "fp32"
    assert fastest({"int8": 1000, "fp32": 900}, preferred="missing") == "int8"
    with pytest.raises(ValueError):
        fastest({})


def test_describe_lists_each_variant_with_its_rate():
    from affectline.inference.variant_probe import describe

    assert describe({"fp32": 148.4, "int8": 2687.2}) == "fp32 148, int8 2,687"

"""The batch cap by measured run time (affectline.inference.run_budget) and where the app applies it."""

import logging

import pytest

from affectline.app import build_parts
from affectline.config import Settings
from affectline.inference.run_budget import RunLayout, batch_within_budget, fit_to_run_budget


def test_a_fast_model_keeps_the_configured_batch():
    # 1,400 crops/s: 32 crops take 23 ms, within 40 ms
    assert batch_within_budget(32, 1400.0, 0.040) == 32


def test_a_slow_model_gets_the_batch_that_runs_within_the_budget():
    # 267 crops/s (v5 int8, one thread, session 12's AVX2-only host): 10 crops in 37 ms, 11 in 41 ms
    assert batch_within_budget(32, 267.0, 0.040) == 10


def test_never_below_one_crop_and_zero_means_no_cap():
    assert batch_within_budget(32, 5.0, 0.040) == 1
    assert batch_within_budget(32, 5.0, 0.0) == 32


@pytest.mark.parametrize("bad", [dict(max_batch_size=0, crops_per_s=100.0), dict(max_batch_size=8, crops_per_s=0.0)])
def test_bad_arguments_are_errors(bad):
    with pytest.raises(ValueError):
        batch_within_budget(bad["max_batch_size"], bad["crops_per_s"], 0.040)


class Model:
    """Stands in for an EmotionModel: fit_to_run_budget only hands it to the timer."""

    def __init__(self, threads: int) -> None:
        self.threads = threads


SPEED = {1: 267.0, 2: 474.0}  # crops/s of v5 int8 by intra-op threads, session 12's AVX2-only host


def fit(configured: RunLayout, max_run_s: float = 0.040, speeds=SPEED):
    loads = []

    def load_with_threads(n: int) -> Model:
        loads.append(n)
        return Model(n)

    model, layout, note = fit_to_run_budget(Model(configured.threads), configured, max_run_s, load_with_threads,
                                            timer=lambda m, batch: speeds[m.threads])
    return model, layout, note, loads


def test_a_layout_that_runs_within_the_budget_is_kept():
    configured = RunLayout(workers=2, threads=1, max_batch_size=32)
    model, layout, note, loads = fit(configured, speeds={1: 1400.0})
    assert (layout, note, loads, model.threads) == (configured, "", [], 1)


def test_slow_single_threaded_workers_become_one_wide_worker_with_a_batch_that_fits():
    model, layout, note, loads = fit(RunLayout(workers=2, threads=1, max_batch_size=32))
    # 32 crops at 267/s = 120 ms > 40; two threads: 474/s -> 18 crops in 38 ms
    assert layout == RunLayout(workers=1, threads=2, max_batch_size=18)
    assert loads == [2] and model.threads == 2
    assert "120 ms" in note and "max batch size 18" in note
    assert "~16 viewers at 30 fps" in note  # 474 crops/s / 30


def test_a_layout_that_is_already_multithreaded_only_gets_a_smaller_batch():
    _, layout, _, loads = fit(RunLayout(workers=1, threads=2, max_batch_size=32), speeds={2: 474.0})
    assert layout == RunLayout(workers=1, threads=2, max_batch_size=18) and loads == []


def test_no_budget_changes_nothing():
    configured = RunLayout(workers=2, threads=1, max_batch_size=32)
    assert fit(configured, max_run_s=0)[1:] == (configured, "", [])


def test_the_app_serves_with_the_fitted_layout(tmp_path, caplog):
    # A budget no CPU meets (1 µs): one wide worker, one crop per run, and a log line saying so.
    with caplog.at_level(logging.WARNING, logger="affectline"):
        parts = build_parts(Settings(data_dir=tmp_path / "a", max_run_ms=0.001, model_variant="int8"))
    try:
        config = parts.batcher.config
        assert (config.workers, config.max_batch_size) == (1, 1)
        assert "serving with 1 worker x 2 threads" in caplog.text
    finally:
        parts.writer.close()
        parts.engine.dispose()
    parts = build_parts(Settings(data_dir=tmp_path / "b", max_run_ms=0, model_variant="int8"))
    try:
        defaults = Settings()
        assert (parts.batcher.config.workers, parts.batcher.config.max_batch_size) == (
            defaults.inference_workers, defaults.max_batch_size)
    finally:
        parts.writer.close()
        parts.engine.dispose()

"""Fits the inference layout to the model's measured speed, so that on a slow host one model
run cannot take most of a batch's latency budget.

Why: a request waits, at worst, for a run already in progress and then for its own run; with
~15 ms of RPC handling and group commit on top, two runs must fit in the 100 ms p99 target,
so one run gets ~40 ms. The default max batch (32) was measured on hosts where a
single-threaded run of 32 crops of the default model takes ~20 ms. On session 12's AVX2-only
EPYC the same run took ~120 ms, and with max batch 32 the server missed p99 < 100 ms at 6
sessions of 30 fps; capped at one 10-frame request per run it held 8, and with that run
spread over both cores (one worker, two threads: ~20 ms instead of ~37) it held 8-10
(docs/performance.md, session 12). Where the model is fast enough nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from affectline.inference.variant_probe import blank_crops, time_variants

if TYPE_CHECKING:
    from affectline.inference.engine import EmotionModel


def batch_within_budget(max_batch_size: int, crops_per_s: float, max_run_s: float) -> int:
    """The largest batch, at most `max_batch_size` and at least 1, that a model running at
    `crops_per_s` (one worker, timed on this machine) finishes within `max_run_s`.
    `max_run_s` <= 0 means no cap."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    if max_run_s <= 0:
        return max_batch_size
    if crops_per_s <= 0:
        raise ValueError("crops_per_s must be > 0")
    return max(1, min(max_batch_size, math.floor(max_run_s * crops_per_s)))


VIEWER_FPS = 30  # the product's target frame rate per viewer


@dataclass(frozen=True, slots=True)
class RunLayout:
    workers: int  # model runs at once
    threads: int  # onnxruntime intra-op threads per run
    max_batch_size: int


def time_crops_per_s(model: EmotionModel, batch: int) -> float:
    """One worker's speed on `batch` crops, timed here. Five rounds, not the variant probe's
    three: a freshly loaded multi-threaded session timed 311 crops/s in three rounds and 556
    right after in seven on session 12's noisy host."""
    return time_variants({"model": model.predict}, blank_crops(model.crop_size, batch), rounds=5)["model"]


def fit_to_run_budget(
    model: EmotionModel,
    configured: RunLayout,
    max_run_s: float,
    load_with_threads: Callable[[int], EmotionModel],
    *,
    speed: float | None = None,
    timer: Callable[[EmotionModel, int], float] = time_crops_per_s,
) -> tuple[EmotionModel, RunLayout, str]:
    """The model and layout to serve with, and a line saying what changed ('' when nothing did).

    If one run of `configured.max_batch_size` crops takes longer than `max_run_s` here (`speed`:
    crops/s already timed at that batch, else timed now), then: several single-threaded workers
    become one worker running on all their threads (`load_with_threads(n)` loads the model that
    way), which shortens each run on the same cores; and the max batch is lowered to what that
    worker runs within the budget.
    """
    if max_run_s <= 0:
        return model, configured, ""
    timed = speed or timer(model, configured.max_batch_size)
    run_ms = configured.max_batch_size / timed * 1000
    if run_ms <= max_run_s * 1000:
        return model, configured, ""
    workers, threads, speed = configured.workers, configured.threads, timed
    if workers > 1 and threads == 1:
        workers, threads = 1, configured.workers
        model = load_with_threads(threads)
        speed = timer(model, configured.max_batch_size)
    layout = RunLayout(workers, threads, batch_within_budget(configured.max_batch_size, speed, max_run_s))
    note = (f"one model run of {configured.max_batch_size} crops takes {run_ms:.0f} ms here ({timed:,.0f} crops/s, "
            f"{configured.threads} thread), over max_run_ms={max_run_s * 1000:g}: serving with {workers} worker x "
            f"{threads} threads ({speed:,.0f} crops/s) and max batch size {layout.max_batch_size}; the model alone "
            f"caps this node at ~{speed / VIEWER_FPS:.0f} viewers at {VIEWER_FPS} fps (docs/model-card.md: cost per host)")
    return model, layout, note

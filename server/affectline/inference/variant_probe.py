"""Times a model's precision variants on this machine, so the CPU path serves the one that is
fastest here rather than on the machine that built the files.

Why: a variant's speed depends on the CPU far more than its accuracy does. On the AVX-512/VNNI
host that built affectline-vgg-fast/1, int8 ran 3.1x fp32 at batch 32; on an AVX2-only host of the
same cloud 1.6x with two threads, 1.9x with one (docs/performance.md, session 12). The
manifest's figures describe the build host only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np

# Crops per timed run: the batch the manifests' figures (cpu_img_per_s_batch32) use.
PROBE_BATCH = 32

# Rounds of one timed run per variant; interleaved so that a host slowing down mid-probe
# (these VMs drift by tens of percent within minutes) slows every variant alike.
DEFAULT_ROUNDS = 3


def blank_crops(crop_size: tuple[int, int], batch: int) -> np.ndarray:
    """`batch` all-zero uint8 crops of `crop_size` (width, height) to time a model on: the
    serving graphs have no data-dependent work, so what the pixels are does not change the time."""
    width, height = crop_size
    return np.zeros((batch, height, width), np.uint8)


def time_variants(
    runs: Mapping[str, Callable[[np.ndarray], object]],
    crops: np.ndarray,
    *,
    rounds: int = DEFAULT_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Crops per second of each run on `crops`: one untimed warm-up call each, then `rounds`
    rounds of one timed call per run; the median of a run's rounds is its figure."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    for run in runs.values():
        run(crops)  # first call: memory planning, kernel selection
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = clock()
            run(crops)
            rates[name].append(len(crops) / max(clock() - started, 1e-9))
    return {name: statistics.median(r) for name, r in rates.items()}


def describe(measured: Mapping[str, float]) -> str:
    """'fp32 148, fp16 142, int8 256': timings as the server log and the bench print them."""
    return ", ".join(f"{name} {rate:,.0f}" for name, rate in measured.items())


def fastest(measured: Mapping[str, float], *, preferred: str | None = None, margin: float = 0.10) -> str:
    """The variant with the highest figure. `preferred` (the build host's pick) is kept unless
    another variant beats it by more than `margin`: two variants within the timing noise
    must not make the served variant, and so the scores, change from one start to the next."""
    if not measured:
        raise ValueError("no variants were timed")
    best = max(measured, key=measured.__getitem__)
    if preferred in measured and measured[best] <= measured[preferred] * (1.0 + margin):
        return preferred
    return best

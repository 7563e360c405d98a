"""Temporal smoothing of per-frame emotion probabilities within one session.

A time-aware exponential moving average: each new face frame moves the state by
alpha = 1 - exp(-dt / tau), where dt is the video time since the previous face frame.
That makes the result independent of the capture rate (15 fps and 30 fps give the same
curve), unlike a fixed per-frame alpha. A backwards jump (a seek) or a gap longer than
`reset_after_ms` restarts from the new frame, so a scene is never smoothed into another.
Frames without a face leave the state alone and get no smoothed value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    tau_ms: float = 250.0  # 0 disables smoothing (smoothed == raw)
    reset_after_ms: int = 2000

    @classmethod
    def parse(cls, spec: str) -> "SmoothingConfig":
        """"ema:TAU_MS" or "none"."""
        if spec == "none":
            return cls(tau_ms=0.0)
        kind, _, value = spec.partition(":")
        if kind != "ema" or not value:
            raise ValueError(f"smoothing must be 'none' or 'ema:<tau ms>', got {spec!r}")
        tau = float(value)
        if tau < 0:
            raise ValueError("smoothing tau must be >= 0 ms")
        return cls(tau_ms=tau)


@dataclass(slots=True)
class EmaState:
    """What a session carries from one batch to the next."""

    probs: tuple[float, ...] | None = None
    last_time_ms: int | None = None


def smooth_step(
    state: EmaState, video_time_ms: int, probs: Sequence[float], config: SmoothingConfig
) -> tuple[float, ...]:
    """Advances `state` by one face frame and returns the smoothed probabilities."""
    return smooth_batch(state, (video_time_ms,), (probs,), config)[0]


def smooth_batch(
    state: EmaState, times_ms: Sequence[int], rows: Sequence[Sequence[float]], config: SmoothingConfig
) -> list[tuple[float, ...]]:
    """Advances `state` by the face frames of one batch, in order; returns one smoothed
    tuple per frame. Plain lists, not numpy: at 7 classes and ~10 frames per batch, numpy's
    per-call overhead would cost more than the arithmetic."""
    smoothed, last = state.probs, state.last_time_ms
    tau, reset = config.tau_ms, config.reset_after_ms
    out: list[tuple[float, ...]] = []
    for t, probs in zip(times_ms, rows, strict=True):
        alpha = 1.0
        if smoothed is not None and last is not None and tau > 0 and 0 <= t - last <= reset:
            alpha = 1.0 - math.exp(-(t - last) / tau)  # else: first frame, seek back or long gap
        if alpha >= 1.0 or smoothed is None:
            smoothed = tuple([float(p) for p in probs])
        else:
            smoothed = tuple([s + alpha * (float(p) - s) for s, p in zip(smoothed, probs, strict=True)])
        last = t
        out.append(smoothed)
    state.probs, state.last_time_ms = smoothed, last
    return out

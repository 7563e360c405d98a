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
    last = state.last_time_ms
    if state.probs is None or last is None or config.tau_ms <= 0:
        alpha = 1.0
    else:
        dt = video_time_ms - last
        if dt < 0 or dt > config.reset_after_ms:
            alpha = 1.0  # seek backwards or a long gap: start over
        else:
            alpha = 1.0 - math.exp(-dt / config.tau_ms)
    if alpha >= 1.0 or state.probs is None:
        smoothed = tuple(float(p) for p in probs)
    else:
        smoothed = tuple(s + alpha * (float(p) - s) for s, p in zip(state.probs, probs, strict=True))
    state.probs, state.last_time_ms = smoothed, video_time_ms
    return smoothed

"""The minimum-viewers floor: fewer viewers than the floor are suppressed, never shown."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SuppressedSpan:
    """Consecutive video seconds [start_s, end_s) withheld, and why."""

    start_s: int
    end_s: int
    reason: str


def below_floor(viewers: int, min_viewers: int) -> str | None:
    """The reason a group of `viewers` is suppressed, or None when it may be shown."""
    if viewers < min_viewers:
        return f"fewer than {min_viewers} viewers"
    return None


def suppressed_spans(seconds: np.ndarray, suppressed: np.ndarray, min_viewers: int) -> tuple[SuppressedSpan, ...]:
    """The runs of suppressed seconds as spans."""
    spans = []
    flags = np.asarray(suppressed, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    reason = f"fewer than {min_viewers} viewers"
    for lo, hi in zip(edges[::2], edges[1::2]):
        spans.append(SuppressedSpan(int(seconds[lo]), int(seconds[hi - 1]) + 1, reason))
    return tuple(spans)

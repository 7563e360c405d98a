"""Key moments: peaks and drops of the per-second curves (scipy.signal.find_peaks)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import signal

from affectline.analytics.curves import VideoCurves
from affectline.storage.records import EMOTIONS

DEFAULT_MIN_PROMINENCE = 0.05
DEFAULT_MIN_DURATION_S = 2.0


@dataclass(frozen=True, slots=True)
class Moment:
    """A peak or a drop of one metric's curve."""

    metric: str
    kind: str  # "peak" or "drop"
    start_s: int  # first second of the span (the curve beyond half the prominence)
    end_s: int  # one past the last second of the span
    peak_s: int  # the second of the extreme
    value: float  # the curve's mean at peak_s
    size: float  # prominence, in the metric's units
    viewers: int  # viewers behind the metric at peak_s
    min_viewers: int  # fewest viewers behind it over the span


def _runs(finite: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    return [(int(lo), int(hi)) for lo, hi in zip(edges[::2], edges[1::2])]


def find_moments(
    metric: str,
    seconds: np.ndarray,
    mean: np.ndarray,
    viewers: np.ndarray,
    min_prominence: float = DEFAULT_MIN_PROMINENCE,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
) -> list[Moment]:
    """Peaks and drops (peaks of the negated curve) of one curve, one sample per second.

    `find_peaks` runs on each stretch without NaN (suppressed seconds split a curve), with
    `prominence=min_prominence` and `width=min_duration_s` measured at half the prominence.
    """
    found: list[Moment] = []
    for lo, hi in _runs(np.isfinite(mean)):
        x = mean[lo:hi]
        for kind, y in (("peak", x), ("drop", -x)):
            peaks, props = signal.find_peaks(y, prominence=min_prominence, width=min_duration_s, rel_height=0.5)
            for p, size, left, right in zip(peaks, props["prominences"], props["left_ips"], props["right_ips"]):
                a, b = lo + math.ceil(left), lo + math.floor(right) + 1
                found.append(
                    Moment(
                        metric=metric,
                        kind=kind,
                        start_s=int(seconds[a]),
                        end_s=int(seconds[b - 1]) + 1,
                        peak_s=int(seconds[lo + p]),
                        value=float(x[p]),
                        size=float(size),
                        viewers=int(viewers[lo + p]),
                        min_viewers=int(viewers[a:b].min()),
                    )
                )
    return found


def key_moments(
    curves: VideoCurves,
    metrics: Iterable[str] | None = None,
    min_prominence: float | Mapping[str, float] = DEFAULT_MIN_PROMINENCE,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
) -> list[Moment]:
    """Key moments of each emotion curve present and of engagement (or of `metrics`).

    Sorted by start second, then metric. Suppressed seconds are NaN in the curves, so no
    moment rests on fewer viewers than the floor.
    """
    names = list(metrics) if metrics is not None else [e for e in EMOTIONS if e in curves.curves] + ["engagement"]
    found: list[Moment] = []
    for name in names:
        curve = curves.curves[name]
        prominence = min_prominence[name] if isinstance(min_prominence, Mapping) else min_prominence
        found += find_moments(name, curves.seconds, curve.mean, curve.viewers, prominence, min_duration_s)
    order = {name: i for i, name in enumerate(names)}
    return sorted(found, key=lambda m: (m.start_s, order[m.metric], m.kind))

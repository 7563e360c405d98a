"""Per video-second curves across viewers: mean, 95 % CI, viewers present, suppression."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from affectline.analytics.definitions import DEFAULT_CONFIG, MetricConfig
from affectline.analytics.rollup import SUMMED, METRICS, SecondRollup, per_viewer_second_means, select_passes
from affectline.analytics.suppression import SuppressedSpan, suppressed_spans
from affectline.storage.records import EMOTIONS

# The range each metric lives in; confidence intervals are clipped to it.
METRIC_RANGE: Mapping[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in METRICS},
    "valence": (-1.0, 1.0),
    "sentiment": (-1.0, 1.0),
}


@dataclass(frozen=True, slots=True, eq=False)
class MetricCurve:
    """One metric per second: NaN where suppressed or fewer than 2 viewers (no CI)."""

    metric: str
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    viewers: np.ndarray  # viewers behind the mean (withheld emotions and no-face seconds left out)


@dataclass(frozen=True, slots=True, eq=False)
class VideoCurves:
    seconds: np.ndarray  # consecutive video seconds
    viewers: np.ndarray  # viewers present (with frames) in each second
    curves: Mapping[str, MetricCurve]
    suppressed: np.ndarray  # bool: fewer viewers present than the floor
    suppressed_spans: tuple[SuppressedSpan, ...]
    sessions: int  # viewers in the selection
    min_viewers: int
    confidence_level: float

    @property
    def attention_share(self) -> np.ndarray:
        return self.curves["attention"].mean


def mean_ci(values: np.ndarray, confidence_level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Column-wise mean, t-interval (scipy.stats.ttest_1samp) and count, NaNs left out.

    Columns with fewer than two values get a mean (one value) but a NaN interval.
    """
    values = np.asarray(values, dtype=np.float64)
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0) if values.size else np.full(values.shape[1:], np.nan)
    low = np.full(mean.shape, np.nan)
    high = np.full(mean.shape, np.nan)
    cols = n >= 2
    if cols.any():
        sub = values[:, cols]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            policy = "omit" if np.isnan(sub).any() else "propagate"
            ci = stats.ttest_1samp(sub, 0.0, axis=0, nan_policy=policy).confidence_interval(confidence_level)
        sd = np.nanstd(sub, axis=0)
        # A column without spread has a zero-width interval (scipy answers NaN there).
        low[cols] = np.where(sd == 0, mean[cols], ci.low)
        high[cols] = np.where(sd == 0, mean[cols], ci.high)
    return mean, low, high, n


def attention_shares(rollups: Iterable[SecondRollup], passes: int | str = 0) -> dict[str, float]:
    """Each session's share of attentive frames among frames of known attention (NaN: unknown)."""
    attentive: dict[str, int] = {}
    known: dict[str, int] = {}
    for r in select_passes(rollups, passes):
        attentive[r.session_id] = attentive.get(r.session_id, 0) + r.attentive
        known[r.session_id] = known.get(r.session_id, 0) + r.pose_known
    return {s: attentive[s] / known[s] if known[s] else float("nan") for s in attentive}


def filter_attention(
    rollups: Sequence[SecondRollup], min_attention_share: float, passes: int | str = 0
) -> list[SecondRollup]:
    """Rows of sessions whose attention share reaches the minimum (unknown share: left out)."""
    shares = attention_shares(rollups, passes)
    keep = {s for s, share in shares.items() if share >= min_attention_share}
    return [r for r in rollups if r.session_id in keep]


def video_curves(
    rollups: Sequence[SecondRollup],
    config: MetricConfig = DEFAULT_CONFIG,
    *,
    emotions: Iterable[str] | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
    passes: int | str = 0,
    min_attention_share: float | None = None,
) -> VideoCurves:
    """Curves of the selected emotions (None: all) and every derived metric, per second.

    Each viewer's per-second mean counts once. A second with fewer viewers present than
    `config.min_viewers` is suppressed (every metric NaN); a metric with fewer viewers behind
    it than the floor (opt-outs, faces missing) is NaN in that second.
    """
    chosen = EMOTIONS if emotions is None else tuple(e for e in EMOTIONS if e in set(emotions))
    unknown = set(emotions or ()) - set(EMOTIONS)
    if unknown:
        raise ValueError(f"unknown emotions: {sorted(unknown)}")
    if min_attention_share is not None:
        rollups = filter_attention(rollups, min_attention_share, passes)
    metrics = (*chosen, *SUMMED, "attention")
    vs = per_viewer_second_means(rollups, passes, start_s, end_s, metrics)
    viewers = vs.watched.sum(axis=0)
    floor = config.min_viewers
    suppressed = viewers < floor
    curves = {}
    for metric in metrics:
        mean, low, high, n = mean_ci(vs.means[metric], config.confidence_level)
        hidden = suppressed | (n < floor)
        lo_bound, hi_bound = METRIC_RANGE[metric]
        curves[metric] = MetricCurve(
            metric,
            np.where(hidden, np.nan, mean),
            np.where(hidden, np.nan, np.clip(low, lo_bound, hi_bound)),
            np.where(hidden, np.nan, np.clip(high, lo_bound, hi_bound)),
            n,
        )
    return VideoCurves(
        seconds=vs.seconds,
        viewers=viewers,
        curves=curves,
        suppressed=suppressed,
        suppressed_spans=suppressed_spans(vs.seconds, suppressed, floor),
        sessions=len(vs.sessions),
        min_viewers=floor,
        confidence_level=config.confidence_level,
    )

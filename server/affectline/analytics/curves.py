"""Per video-second curves across viewers: mean, 95 % CI, viewers present, suppression."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from affectline.analytics.definitions import DEFAULT_CONFIG, MetricConfig
from affectline.analytics.rollup import (
    METRICS,
    SUMMED,
    Rollups,
    as_columns,
    per_viewer_second_means,
    select_pass_columns,
)
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
    """Column-wise mean, t-interval and count, NaNs left out: the interval of
    scipy.stats.ttest_1samp(...).confidence_interval, mean +- t(1-alpha/2, n-1) s / sqrt(n),
    computed for all columns at once (scipy's NaN omission goes column by column).

    Columns with fewer than two values get a mean (one value) but a NaN interval; a column
    without spread gets a zero-width interval.
    """
    values = np.asarray(values, dtype=np.float64)
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0) if values.size else np.full(values.shape[1:], np.nan)
        sd = np.nanstd(values, axis=0, ddof=1) if values.size else np.full(values.shape[1:], np.nan)
    return t_interval(mean, sd, n, confidence_level)


def t_interval(mean: np.ndarray, sd: np.ndarray, n: np.ndarray, confidence_level: float = 0.95
               ) -> tuple[np.ndarray, ...]:
    """mean_ci from each column's mean, sample SD (ddof 1) and count: (mean, low, high, n)."""
    n = np.asarray(n)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        half = stats.t.ppf(0.5 + confidence_level / 2, n - 1) * sd / np.sqrt(n)
    ok = n >= 2
    return mean, np.where(ok, mean - half, np.nan), np.where(ok, mean + half, np.nan), n


def attention_shares(rollups: Rollups, passes: int | str = 0) -> dict[str, float]:
    """Each session's share of attentive frames among frames of known attention (NaN: unknown)."""
    c = select_pass_columns(as_columns(rollups), passes)
    n = len(c.sessions)
    attentive = np.bincount(c.session, weights=c.field("attentive"), minlength=n)
    known = np.bincount(c.session, weights=c.field("pose_known"), minlength=n)
    present = np.unique(c.session)
    return {c.sessions[i]: attentive[i] / known[i] if known[i] else float("nan") for i in present.tolist()}


def filter_attention(rollups: Rollups, min_attention_share: float, passes: int | str = 0) -> Rollups:
    """Rows of sessions whose attention share reaches the minimum (unknown share: left out),
    as rows or columns, as given."""
    shares = attention_shares(rollups, passes)
    keep = {s for s, share in shares.items() if share >= min_attention_share}
    if isinstance(rollups, Sequence):
        return [r for r in rollups if r.session_id in keep]
    return rollups.with_sessions(keep)


def video_curves(
    rollups: Rollups,
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
    intervals = {metric: mean_ci(vs.means[metric], config.confidence_level) for metric in metrics}
    return _assemble(vs.seconds, vs.watched.sum(axis=0), intervals, len(vs.sessions), config)


def curves_from_stats(
    seconds: np.ndarray,
    watched: np.ndarray,
    moments: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    sessions: int,
    config: MetricConfig = DEFAULT_CONFIG,
    *,
    start_s: int | None = None,
    end_s: int | None = None,
) -> VideoCurves:
    """video_curves from per-second statistics of the per-viewer means computed elsewhere (in
    SQL): for each second present, the viewers watching and, per metric, the count, mean and
    sample variance (NaN with fewer than 2) of the viewers' means. The same curves as
    video_curves on the rows behind them, to floating-point rounding.

    `seconds` are the seconds some viewer watched; the curve spans [start_s, end_s), by default
    from the first to the last of them.
    """
    seconds = np.asarray(seconds, dtype=np.int64)
    start = start_s if start_s is not None else int(seconds.min()) if len(seconds) else 0
    end = end_s if end_s is not None else int(seconds.max()) + 1 if len(seconds) else start
    span = np.arange(start, max(start, end), dtype=np.int64)
    inside = (seconds >= start) & (seconds < end)
    at = seconds[inside] - start
    viewers = np.zeros(len(span), dtype=np.int64)
    viewers[at] = np.asarray(watched)[inside]
    intervals = {}
    for metric, (count, mean, var) in moments.items():
        n, m, v = np.zeros(len(span), dtype=np.int64), np.full(len(span), np.nan), np.full(len(span), np.nan)
        n[at], m[at], v[at] = np.asarray(count)[inside], np.asarray(mean)[inside], np.asarray(var)[inside]
        intervals[metric] = t_interval(m, np.sqrt(np.maximum(v, 0.0)), n, config.confidence_level)
    return _assemble(span, viewers, intervals, sessions, config)


def _assemble(seconds: np.ndarray, viewers: np.ndarray, intervals: Mapping[str, tuple[np.ndarray, ...]],
              sessions: int, config: MetricConfig) -> VideoCurves:
    """Curves from each metric's (mean, low, high, n) per second: suppression and clipping."""
    floor = config.min_viewers
    suppressed = viewers < floor
    curves = {}
    for metric, (mean, low, high, n) in intervals.items():
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
        seconds=seconds,
        viewers=viewers,
        curves=curves,
        suppressed=suppressed,
        suppressed_spans=suppressed_spans(seconds, suppressed, floor),
        sessions=sessions,
        min_viewers=floor,
        confidence_level=config.confidence_level,
    )

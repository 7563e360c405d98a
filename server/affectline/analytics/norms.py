"""Norms: a video's headline score as a percentile among other videos' scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from affectline.analytics.definitions import DEFAULT_CONFIG
from affectline.analytics.session_summary import SessionSummary

HEADLINE_METRICS: tuple[str, ...] = ("engagement", "sentiment", "attention_share", "expressiveness")


@dataclass(frozen=True, slots=True)
class Norm:
    video_id: str
    metric: str
    score: float
    percentile: float | None  # % of the other videos scoring at or below this one (None: no norm)
    norm_size: int  # other videos the percentile rests on


def headline_score(
    summaries: Iterable[SessionSummary], metric: str, min_viewers: int = DEFAULT_CONFIG.min_viewers
) -> float:
    """A video's headline score: the mean over its viewers of their session means.

    NaN values are left out; NaN (no score, so no norm) below `min_viewers` viewers.
    """
    values = np.array([s.metric(metric) for s in summaries], dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) >= max(1, min_viewers) else math.nan


def percentile_among(video_id: str, scores: Mapping[str, float], metric: str = "") -> Norm:
    """Where `scores[video_id]` falls among the other videos' scores.

    scipy.stats.percentileofscore with kind="weak": the share of the other videos whose score
    is at or below this one, in percent. The video itself and NaN scores are never in the norm.
    """
    score = scores.get(video_id, math.nan)
    others = np.array([v for k, v in scores.items() if k != video_id], dtype=np.float64)
    others = others[~np.isnan(others)]
    if math.isnan(score) or len(others) == 0:
        return Norm(video_id, metric, score, None, len(others))
    percentile = float(stats.percentileofscore(others, score, kind="weak"))
    return Norm(video_id, metric, score, percentile, len(others))


def video_norms(
    video_id: str,
    summaries_by_video: Mapping[str, Iterable[SessionSummary]],
    metrics: Iterable[str] = HEADLINE_METRICS,
    min_viewers: int = DEFAULT_CONFIG.min_viewers,
) -> list[Norm]:
    """The video's norm on each headline metric among the other videos given.

    To norm within a category tag, pass only that category's videos. Videos with fewer
    viewers than `min_viewers` have no score: they are neither normed nor part of a norm.
    """
    by_video = {v: list(s) for v, s in summaries_by_video.items()}
    norms = []
    for m in metrics:
        scores = {v: headline_score(s, m, min_viewers) for v, s in by_video.items()}
        norms.append(percentile_among(video_id, scores, m))
    return norms

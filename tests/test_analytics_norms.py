"""Norms: percentiles among other videos, never against itself."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from affectline.analytics import SessionSummary, headline_score, percentile_among, video_norms


def summary(engagement: float) -> SessionSummary:
    return SessionSummary("s", 1, 1, 1, {"engagement": engagement, "attention": 1.0}, None, None)


def test_percentile_among_other_videos() -> None:
    scores = {"v1": 0.3, "v2": 0.5, "v3": 0.5, "v4": 0.1, "v5": math.nan}
    norm = percentile_among("v2", scores, "engagement")
    # others: 0.3, 0.5, 0.1 (v5 has no score): at or below 0.5 -> 3 of 3
    assert (norm.percentile, norm.norm_size) == (100.0, 3)
    assert percentile_among("v1", scores).percentile == pytest.approx(100 / 3)  # 0.1 of 0.5, 0.5, 0.1
    assert percentile_among("v4", scores).percentile == 0.0
    assert norm.percentile == stats.percentileofscore([0.3, 0.5, 0.1], 0.5, kind="weak")
    # a video is never compared with itself
    assert percentile_among("v1", {"v1": 0.3}).percentile is None
    assert percentile_among("v5", scores).percentile is None


def test_video_norms_from_summaries_with_a_floor() -> None:
    videos = {
        "a": [summary(x) for x in (0.1, 0.2, 0.3, 0.4, 0.5)],  # 0.3
        "b": [summary(x) for x in (0.5, 0.6, 0.7, 0.8, 0.9)],  # 0.7
        "c": [summary(0.9)] * 4,  # fewer than 5 viewers: no score, not in any norm
        "d": [summary(x) for x in (0.0, 0.1, 0.2, 0.3, 0.4, math.nan)],  # 0.2
    }
    assert headline_score(videos["a"], "engagement") == pytest.approx(0.3)
    assert math.isnan(headline_score(videos["c"], "engagement"))
    (norm,) = video_norms("a", videos, ["engagement"])
    assert (norm.score, norm.percentile, norm.norm_size) == (pytest.approx(0.3), 50.0, 2)
    assert video_norms("c", videos, ["engagement"])[0].percentile is None
    assert video_norms("b", videos, ["attention_share"])[0].percentile == 100.0

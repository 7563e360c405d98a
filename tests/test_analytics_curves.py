"""Per-second curves across viewers, suppression under the floor, and key moments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

from affectline.analytics import (
    FrameArrays,
    MetricConfig,
    SecondRollup,
    find_moments,
    key_moments,
    mean_ci,
    rollup_session,
    video_curves,
)
from affectline.analytics.suppression import SuppressedSpan
from affectline.storage.records import EMOTIONS

HAPPY, NEUTRAL = EMOTIONS.index("happy"), EMOTIONS.index("neutral")


def viewer(session_id: str, happy: list[float], *, fps: int = 1, yaw: float = 0.0, allowed=None) -> list[SecondRollup]:
    """A viewer with `fps` frames in each second; happy as given, the rest neutral."""
    n = len(happy) * fps
    probs = np.zeros((n, 7))
    probs[:, HAPPY] = np.repeat(happy, fps)
    probs[:, NEUTRAL] = 1 - probs[:, HAPPY]
    t = np.arange(n) * (1000 // fps)
    frames = FrameArrays(np.zeros(n), np.arange(n), t, np.ones(n, bool), probs, np.full(n, yaw))
    rows, _ = rollup_session(session_id, frames, allowed=allowed)
    return rows


def test_mean_ci_matches_scipy() -> None:
    x = np.array([[0.1, 0.5], [0.2, np.nan], [0.4, 0.25], [0.3, 0.75], [0.5, 0.5]])
    mean, low, high, n = mean_ci(x)
    for j in range(2):
        col = x[:, j][~np.isnan(x[:, j])]
        ci = stats.ttest_1samp(col, 0.0).confidence_interval(0.95)
        assert mean[j] == pytest.approx(col.mean()) and n[j] == len(col)
        assert (low[j], high[j]) == pytest.approx((ci.low, ci.high))
    # one value: a mean, no interval; no spread: a zero-width interval
    mean, low, high, n = mean_ci(np.array([[0.5, 0.25], [np.nan, 0.25]]))
    assert mean.tolist() == [0.5, 0.25] and np.isnan(low[0]) and (low[1], high[1]) == (0.25, 0.25)


def test_curves_mean_ci_viewers_and_suppression() -> None:
    values = {"a": [0.1, 0.2, 0.5], "b": [0.3, 0.2, 0.5], "c": [0.5, 0.4], "d": [0.2, 0.6], "e": [0.4, 0.1]}
    rows = [r for s, v in values.items() for r in viewer(s, v)]
    curves = video_curves(rows)
    assert curves.seconds.tolist() == [0, 1, 2] and curves.viewers.tolist() == [5, 5, 2]
    assert curves.sessions == 5 and curves.suppressed.tolist() == [False, False, True]
    assert curves.suppressed_spans == (SuppressedSpan(2, 3, "fewer than 5 viewers"),)
    happy = curves.curves["happy"]
    for sec in (0, 1):
        col = np.array([v[sec] for v in values.values()])
        ci = stats.ttest_1samp(col, 0.0).confidence_interval(0.95)
        assert happy.mean[sec] == pytest.approx(col.mean())
        assert happy.ci_low[sec] == pytest.approx(max(0.0, ci.low))
        assert happy.ci_high[sec] == pytest.approx(ci.high)
    assert np.isnan(happy.mean[2]) and np.isnan(curves.curves["engagement"].mean[2])
    # all frontal: attention share 1; engagement = 1 - P(neutral) = happy here
    assert curves.attention_share[:2].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(curves.curves["engagement"].mean[:2], happy.mean[:2])
    # a lower floor shows second 2
    shown = video_curves(rows, MetricConfig(min_viewers=2))
    assert shown.curves["happy"].mean[2] == pytest.approx(0.5) and not shown.suppressed.any()
    # fewer viewers than the floor in all: everything suppressed
    few = video_curves(rows[:6])
    assert few.suppressed.all() and np.isnan(few.curves["valence"].mean).all()


def test_each_viewer_counts_once() -> None:
    rows = viewer("busy", [1.0], fps=30) + [r for i in range(4) for r in viewer(f"v{i}", [0.0])]
    curves = video_curves(rows)
    assert curves.curves["happy"].mean[0] == pytest.approx(0.2)  # not 30/34


def test_opt_outs_count_viewers_per_emotion() -> None:
    rows = [r for i in range(5) for r in viewer(f"v{i}", [0.5, 0.5], allowed=None if i else {"neutral"})]
    curves = video_curves(rows)
    assert curves.viewers.tolist() == [5, 5]
    assert curves.curves["happy"].viewers.tolist() == [4, 4]
    assert np.isnan(curves.curves["happy"].mean).all()  # 4 < floor
    assert curves.curves["neutral"].mean.tolist() == [0.5, 0.5]
    assert curves.curves["engagement"].viewers.tolist() == [5, 5]
    assert curves.curves["valence"].viewers.tolist() == [4, 4]


def test_filters_emotions_time_range_attention() -> None:
    rows = [r for i in range(6) for r in viewer(f"v{i}", [0.1 * i] * 4, yaw=0.0 if i < 5 else 50.0)]
    curves = video_curves(rows, emotions=["happy"], start_s=1, end_s=3)
    derived = {"confidence", "valence", "expressiveness", "engagement", "sentiment", "attention"}
    assert set(curves.curves) == {"happy"} | derived
    assert curves.seconds.tolist() == [1, 2]
    assert curves.attention_share.tolist() == pytest.approx([5 / 6, 5 / 6])
    attentive = video_curves(rows, min_attention_share=0.5)
    assert attentive.sessions == 5 and attentive.attention_share.tolist() == [1.0] * 4
    assert video_curves(rows, min_attention_share=0.5, emotions=[]).curves.keys().isdisjoint(EMOTIONS)
    with pytest.raises(ValueError):
        video_curves(rows, emotions=["joy"])


def planted() -> np.ndarray:
    x = np.full(40, 0.3)
    x[10:15] = [0.35, 0.5, 0.6, 0.5, 0.35]  # a peak at 12 s
    x[25:30] = [0.25, 0.15, 0.1, 0.15, 0.25]  # a drop at 27 s
    return x


def test_find_moments_on_a_planted_peak_and_drop() -> None:
    x = planted()
    seconds = np.arange(100, 140)
    viewers = np.full(40, 9)
    viewers[12] = 7
    found = find_moments("happy", seconds, x, viewers, min_prominence=0.1, min_duration_s=2)
    assert [(m.kind, m.peak_s, m.start_s, m.end_s) for m in found] == [("peak", 112, 111, 114), ("drop", 127, 126, 129)]
    peak, drop = found
    assert peak.size == pytest.approx(0.3) and peak.value == 0.6 and peak.viewers == 7 and peak.min_viewers == 7
    assert drop.size == pytest.approx(0.2) and drop.value == 0.1 and drop.viewers == 9
    # the same peaks and prominences as calling scipy directly
    ref, props = signal.find_peaks(x, prominence=0.1, width=2)
    assert [m.peak_s - 100 for m in found if m.kind == "peak"] == ref.tolist()
    assert peak.size == pytest.approx(props["prominences"][0])
    # a larger prominence leaves only the peak
    assert [m.kind for m in find_moments("happy", seconds, x, viewers, 0.25, 2)] == ["peak"]
    # suppressed (NaN) seconds split the curve: no moment across them
    gap = x.copy()
    gap[12] = np.nan
    assert [m.kind for m in find_moments("happy", seconds, gap, viewers, 0.1, 2)] == ["drop"]


def test_min_duration() -> None:
    x = np.full(20, 0.3)
    x[10] = 0.6  # a one-second blip: 1 s wide at half its prominence
    seconds, viewers = np.arange(20), np.full(20, 5)
    assert find_moments("happy", seconds, x, viewers, 0.1, 2) == []
    blip = find_moments("happy", seconds, x, viewers, 0.1, 1)
    assert [(m.peak_s, m.start_s, m.end_s) for m in blip] == [(10, 10, 11)]


def test_key_moments_from_curves() -> None:
    x = planted()
    rows = [r for i in range(6) for r in viewer(f"v{i}", list(x + 0.01 * i))]
    curves = video_curves(rows)
    moments = key_moments(curves, min_prominence={**{e: 0.1 for e in EMOTIONS}, "engagement": 0.1})
    summary = [(m.metric, m.kind, m.peak_s) for m in moments]
    # happy peaks where neutral drops, and engagement (= 1 - neutral here) follows happy
    assert summary == [
        ("happy", "peak", 12), ("neutral", "drop", 12), ("engagement", "peak", 12),
        ("happy", "drop", 27), ("neutral", "peak", 27), ("engagement", "drop", 27),
    ]
    assert all(m.viewers == 6 for m in moments)
    assert [m.metric for m in key_moments(curves, ["valence"], 0.1)] == ["valence", "valence"]

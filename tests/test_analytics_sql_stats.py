"""The PostgreSQL fast paths' pure halves: curves and the curve difference from per-second
statistics (what RollupStore.second_stats returns) equal the ones from the rows, and the
several-metrics bootstrap equals one scipy.stats.bootstrap call per metric."""

from __future__ import annotations

import numpy as np
from affectline.analytics import (
    ABConfig,
    MetricConfig,
    curve_difference,
    per_viewer_second_means,
    video_curves,
)
from affectline.analytics.ab_test import (
    _bootstrap,
    compare_values,
    curve_difference_from_stats,
)
from affectline.analytics.curves import curves_from_stats
from affectline.analytics.rollup import METRICS, RollupColumns
from test_analytics_curves import viewer


def rows(seed: int, viewers: int) -> RollupColumns:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(viewers):
        start = int(rng.integers(0, 3))  # late starters: seconds with fewer viewers
        out += [r for r in viewer(f"s{seed}-{i:02d}", list(rng.uniform(0, 0.9, 12)), fps=2) if r.second >= start]
    return RollupColumns.from_rows(out)


def second_stats(c: RollupColumns, metrics=METRICS):
    """What the SQL computes: per second watched, viewers and each metric's count, mean, var_samp."""
    vs = per_viewer_second_means(c, metrics=metrics)
    present = vs.watched.any(axis=0)
    out = {}
    for m in metrics:
        x = vs.means[m][:, present]
        n = np.sum(~np.isnan(x), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), np.nan)
            var = np.where(n > 1, np.nansum((x - mean) ** 2, axis=0) / np.maximum(n - 1, 1), np.nan)
        out[m] = (n, mean, var)
    return vs.seconds[present], vs.watched.sum(axis=0)[present], out, len(vs.sessions)


def test_curves_from_stats_equal_video_curves() -> None:
    c, config = rows(1, 9), MetricConfig(min_viewers=8)
    for start, end in ((None, None), (2, 9), (10, 15)):
        seconds, watched, stats_, sessions = second_stats(c)
        got = curves_from_stats(seconds, watched, stats_, sessions, config, start_s=start, end_s=end)
        want = video_curves(c, config, start_s=start, end_s=end)
        assert list(got.seconds) == list(want.seconds) and list(got.viewers) == list(want.viewers)
        assert got.suppressed_spans == want.suppressed_spans and got.sessions == want.sessions
        for m in METRICS:
            assert list(got.curves[m].viewers) == list(want.curves[m].viewers)
            for k in ("mean", "ci_low", "ci_high"):
                np.testing.assert_allclose(getattr(got.curves[m], k), getattr(want.curves[m], k), atol=1e-12)


def test_curve_difference_from_stats_equals_curve_difference() -> None:
    a, b, config = rows(2, 7), rows(3, 8), MetricConfig(min_viewers=3)
    sa, sb = second_stats(a, ("happy",)), second_stats(b, ("happy",))
    for start, end in ((None, None), (1, 20)):
        got = curve_difference_from_stats((sa[0], *sa[2]["happy"]), (sb[0], *sb[2]["happy"]), "happy", config,
                                          start_s=start, end_s=end)
        want = curve_difference(a, b, "happy", config, start_s=start, end_s=end)
        assert list(got.seconds) == list(want.seconds) and list(got.suppressed) == list(want.suppressed)
        assert list(got.n_a) == list(want.n_a) and list(got.n_b) == list(want.n_b)
        for k in ("difference", "ci_low", "ci_high"):
            np.testing.assert_allclose(getattr(got, k), getattr(want, k), atol=1e-12)


def test_several_metrics_bootstrap_equals_one_call_per_metric() -> None:
    rng = np.random.default_rng(4)
    ab = ABConfig(n_resamples=999)
    a = {m: rng.normal(0, 1, 40) for m in ("x", "y", "z")}
    b = {m: rng.normal(0.3, 1, 35) for m in ("x", "y", "z")}
    a["z"][:3] = np.nan  # another sample size: bootstrapped on its own
    b["y"][:] = 0.5  # degenerate in b only: still an interval
    result = {r.metric: r for r in compare_values(a, b, ab).metrics}
    for m in a:
        x, y = a[m][~np.isnan(a[m])], b[m]
        low, high = _bootstrap(x, y, ab)
        np.testing.assert_allclose([result[m].ci_low, result[m].ci_high], [low, high], rtol=0, atol=1e-12)

"""A/B statistics: checked against scipy and hand calculations, plus planted-effect and A/A checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from affectline.analytics import (
    ABConfig,
    FrameArrays,
    compare_values,
    compare_variants,
    curve_difference,
    hedges_g,
    holm,
    n_per_group,
    power_two_sample,
    rollup_session,
    summarize_sessions,
)
from affectline.storage.records import EMOTIONS

FAST = ABConfig(n_resamples=499, bootstrap_method="percentile")


def test_holm_textbook_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    assert holm([0.4, 0.9]).tolist() == [0.8, 0.9]
    assert holm([]).shape == (0,)


def test_hedges_g_by_hand() -> None:
    a, b = [1, 2, 3, 4], [3, 4, 5, 6, 7]
    # means 2.5 and 5; variances 5/3 and 2.5; pooled SD sqrt((3*5/3 + 4*2.5) / 7) = sqrt(15/7)
    d = 2.5 / math.sqrt(15 / 7)
    j = math.gamma(3.5) / (math.sqrt(3.5) * math.gamma(3))  # df = 7
    assert hedges_g(np.array(a), np.array(b)) == pytest.approx(d * j, rel=1e-12)
    assert hedges_g(np.array(a), np.array(b)) == pytest.approx(d * (1 - 3 / (4 * 7 - 1)), rel=1e-3)
    assert hedges_g(np.array(b), np.array(a)) == pytest.approx(-d * j)
    assert hedges_g(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert math.isnan(hedges_g(np.array([1.0]), np.array([1.0, 2.0])))


def test_sample_size_matches_published_tables() -> None:
    # Cohen's tables (two-sided alpha .05, power .8): d = .2 -> 394 (G*Power), .5 -> 64, .8 -> 26
    assert [n_per_group(d) for d in (0.2, 0.5, 0.8)] == [394, 64, 26]
    assert power_two_sample(0.5, 64) >= 0.8 > power_two_sample(0.5, 63)
    assert n_per_group(0.0) is None and n_per_group(1e-5) is None
    assert n_per_group(0.5, alpha=0.05 / 4) > 64


def test_compare_matches_direct_scipy_calls() -> None:
    a = {"engagement": [0.1, 0.3, 0.2, 0.4, 0.25, 0.35], "sentiment": [0.0, -0.1, 0.2, 0.1, 0.05, np.nan]}
    b = {"engagement": [0.3, 0.5, 0.45, 0.6, 0.4, 0.55], "sentiment": [0.1, -0.2, 0.3, 0.0, 0.15, 0.05]}
    result = compare_values(a, b)
    welch, mwu = [], []
    for r in result.metrics:
        x = np.array(a[r.metric]); x = x[~np.isnan(x)]
        y = np.array(b[r.metric]); y = y[~np.isnan(y)]
        assert (r.n_a, r.n_b) == (len(x), len(y))
        assert r.difference == pytest.approx(y.mean() - x.mean())
        assert r.welch_p == pytest.approx(stats.ttest_ind(y, x, equal_var=False).pvalue)
        assert r.mannwhitney_p == pytest.approx(stats.mannwhitneyu(y, x, alternative="two-sided").pvalue)
        boot = stats.bootstrap(
            (x, y),
            lambda p, q, axis: q.mean(axis=axis) - p.mean(axis=axis),
            vectorized=True,
            rng=np.random.default_rng(0),
        ).confidence_interval
        assert (r.ci_low, r.ci_high) == pytest.approx((boot.low, boot.high))
        assert r.hedges_g == pytest.approx(hedges_g(x, y))
        welch.append(r.welch_p)
        mwu.append(r.mannwhitney_p)
    np.testing.assert_allclose([r.holm_p for r in result.metrics], holm(welch))
    np.testing.assert_allclose([r.holm_mannwhitney_p for r in result.metrics], holm(mwu))
    engagement = result.metrics[0]
    assert engagement.reliable and not result.metrics[1].reliable
    assert result.verdict.startswith("B scores higher than A on engagement (difference B-A +0.200")
    assert "No reliable difference between A and B on sentiment" in result.verdict
    # the same data give the same interval (seeded bootstrap)
    assert compare_values(a, b).metrics == result.metrics


def test_verdicts_claim_no_more_than_the_tests() -> None:
    rng = np.random.default_rng(3)
    lower = compare_values({"engagement": rng.normal(1, 1, 300)}, {"engagement": rng.normal(0, 1, 300)}, FAST,
                           labels=("cut 1", "cut 2"))
    assert lower.verdict.startswith("cut 1 scores higher than cut 2 on engagement")
    small = compare_values({"engagement": rng.normal(0, 1, 12)}, {"engagement": rng.normal(0.3, 1, 12)}, FAST)
    r = small.metrics[0]
    assert not r.reliable
    assert small.verdict.startswith("No reliable difference between A and B on engagement")
    warning = f"With n=12 per variant, an effect the size observed on engagement (g={r.hedges_g:.2f}) needs about"
    assert warning in small.verdict
    assert r.n_needed == n_per_group(r.hedges_g)
    few = compare_values({"engagement": [0.1, 0.2, 0.3, 0.4]}, {"engagement": [0.5] * 10})
    assert few.suppressed == "fewer than 5 viewers" and few.metrics == () and "Not shown" in few.verdict


def test_planted_effect_found_and_aa_splits_stay_quiet() -> None:
    rng = np.random.default_rng(11)
    n = 200
    metrics = ("engagement", "sentiment", "attention_share")
    # per-viewer summaries: engagement carries a planted d = 0.5; the others none
    a = {m: rng.normal(0, 1, n) for m in metrics}
    b = {m: rng.normal(0.5 if m == "engagement" else 0, 1, n) for m in metrics}
    result = compare_values(a, b, FAST)
    assert [r.reliable for r in result.metrics] == [True, False, False]
    assert 0.3 < result.metrics[0].hedges_g < 0.7
    # A/A: split one variant's 400 viewers at random, 200 times; Holm keeps the family-wise rate <= 5 %
    pool = {m: rng.normal(0, 1, 2 * n) for m in metrics}
    false_positives = 0
    for _ in range(200):
        order = rng.permutation(2 * n)
        left, right = order[:n], order[n:]
        aa = compare_values({m: v[left] for m, v in pool.items()}, {m: v[right] for m, v in pool.items()}, FAST)
        false_positives += any(r.reliable for r in aa.metrics)
        assert ("scores higher" in aa.verdict) == any(r.reliable for r in aa.metrics)
    # 200 splits estimate the rate to about +-1.5 points: the count must not exceed what a true
    # 5 % rate plausibly gives (one-sided binomial test at 1 %; 1,000 splits measured 4.5-4.9 %)
    assert false_positives <= 20
    assert stats.binomtest(false_positives, 200, 0.05, alternative="greater").pvalue > 0.01


def viewers(prefix: str, happy: float, k: int, rng: np.random.Generator, seconds: int = 4) -> list:
    rows = []
    for i in range(k):
        n = seconds * 2
        probs = np.zeros((n, 7))
        probs[:, EMOTIONS.index("happy")] = np.clip(happy + rng.normal(0, 0.1, n), 0, 1)
        probs[:, EMOTIONS.index("neutral")] = 1 - probs[:, EMOTIONS.index("happy")]
        frames = FrameArrays(np.zeros(n), np.arange(n), np.arange(n) * 500, np.ones(n, bool), probs, np.zeros(n))
        rows += rollup_session(f"{prefix}{i}", frames)[0]
    return rows


def test_compare_variants_and_curve_difference() -> None:
    rng = np.random.default_rng(5)
    a_rows, b_rows = viewers("a", 0.2, 8, rng), viewers("b", 0.6, 6, rng)
    result = compare_variants(summarize_sessions(a_rows), summarize_sessions(b_rows), ("engagement", "happy"), FAST)
    assert [r.metric for r in result.metrics] == ["engagement", "happy"]
    assert all(r.reliable and r.difference > 0.3 for r in result.metrics)
    diff = curve_difference(a_rows, b_rows, "happy")
    assert diff.seconds.tolist() == [0, 1, 2, 3] and diff.n_a.tolist() == [8] * 4 and diff.n_b.tolist() == [6] * 4
    from affectline.analytics import per_viewer_second_means

    xa = per_viewer_second_means(a_rows).means["happy"]
    xb = per_viewer_second_means(b_rows).means["happy"]
    for s in range(4):
        ci = stats.ttest_ind(xb[:, s], xa[:, s], equal_var=False).confidence_interval(0.95)
        assert diff.difference[s] == pytest.approx(xb[:, s].mean() - xa[:, s].mean())
        assert (diff.ci_low[s], diff.ci_high[s]) == pytest.approx((ci.low, ci.high))
    # below the floor in a variant: suppressed
    thin = curve_difference(a_rows, b_rows[: 4 * 1], "happy")
    assert thin.suppressed.all() and np.isnan(thin.difference).all()

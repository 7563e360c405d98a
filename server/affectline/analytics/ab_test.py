"""A/B comparison of two variants on per-viewer summaries, and of their per-second curves."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from affectline.analytics.definitions import DEFAULT_CONFIG, MetricConfig
from affectline.analytics.rollup import Rollups, as_columns, per_viewer_second_means
from affectline.analytics.session_summary import SessionSummary
from affectline.analytics.suppression import below_floor

DEFAULT_METRICS: tuple[str, ...] = ("engagement", "sentiment", "attention_share", "expressiveness")


@dataclass(frozen=True, slots=True)
class ABConfig:
    alpha: float = 0.05  # family-wise, across the metrics compared (Holm)
    power: float = 0.8  # for the minimum-sample warning
    confidence_level: float = 0.95
    n_resamples: int = 9999  # bootstrap resamples
    bootstrap_method: str = "BCa"
    seed: int = 0  # the bootstrap's generator: the same data give the same interval


DEFAULT_AB = ABConfig()


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN, not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """(mean b - mean a) / pooled SD, times the exact small-sample correction J(df).

    J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)), df = n_a + n_b - 2 (about 1 - 3/(4 df - 1)).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    df = len(a) + len(b) - 2
    if len(a) < 2 or len(b) < 2:
        return math.nan
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / df)
    diff = float(b.mean() - a.mean())
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.nan
    j = math.exp(special.gammaln(df / 2) - 0.5 * math.log(df / 2) - special.gammaln((df - 1) / 2))
    return j * diff / pooled


def power_two_sample(effect_size: float, n: float, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with n per group (noncentral t, scipy.stats.nct)."""
    df = 2 * n - 2
    nc = abs(effect_size) * math.sqrt(n / 2)
    crit = stats.t.ppf(1 - alpha / 2, df)
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    # Far in the tails nct can answer NaN; the normal approximation is exact enough there.
    if math.isnan(upper):
        upper = stats.norm.sf(crit - nc)
    if math.isnan(lower):
        lower = stats.norm.cdf(-crit - nc)
    return float(upper + lower)


def n_per_group(effect_size: float, alpha: float = 0.05, power: float = 0.8, max_n: int = 10**7) -> int | None:
    """Smallest n per group with at least `power` to detect `effect_size` (None: beyond max_n).

    Solved on the noncentral-t power (`power_two_sample`); the normal approximation
    2 ((z_{1-alpha/2} + z_power) / d)^2 only brackets the search.
    """
    d = abs(effect_size)
    if not d > 0:
        return None
    guess = 2 * ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / d) ** 2
    if guess > max_n:
        return None
    if power_two_sample(d, 2, alpha) >= power:
        return 2
    hi = 2 * guess + 10
    n = math.ceil(optimize.brentq(lambda x: power_two_sample(d, x, alpha) - power, 2.0, hi, xtol=1e-6))
    while n > 2 and power_two_sample(d, n - 1, alpha) >= power:
        n -= 1
    while power_two_sample(d, n, alpha) < power:
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class MetricComparison:
    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float  # mean b - mean a
    ci_low: float  # bootstrap CI of the difference
    ci_high: float
    hedges_g: float
    welch_p: float
    mannwhitney_p: float
    holm_p: float  # Welch p, Holm-adjusted across the metrics compared
    holm_mannwhitney_p: float
    reliable: bool  # Holm p < alpha and the CI excludes 0
    n_needed: int | None  # per variant, for the observed g at alpha/m with the configured power


@dataclass(frozen=True, slots=True)
class Comparison:
    label_a: str
    label_b: str
    metrics: tuple[MetricComparison, ...]
    verdict: str
    suppressed: str | None = None  # why nothing is reported (fewer viewers than the floor)


def _name(metric: str) -> str:
    return metric.replace("_", " ")


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _bootstrap(a: np.ndarray, b: np.ndarray, ab: ABConfig) -> tuple[np.ndarray, np.ndarray]:
    """scipy.stats.bootstrap CI of mean(b) - mean(a); a and b may hold several metrics' values
    as rows (k, n_a) and (k, n_b), all of the same viewers.

    Several metrics go through one call that resamples viewer indices: the seeded generator
    draws the same indices as it does for one metric alone and each row's statistic is computed
    as for that metric alone, so every interval equals the one-metric call's exactly, while the
    indices (the costly part) are drawn once, not once per metric.
    """
    kw = {"vectorized": True, "n_resamples": ab.n_resamples, "method": ab.bootstrap_method,
          "confidence_level": ab.confidence_level, "rng": np.random.default_rng(ab.seed)}
    if a.ndim == 1:
        ci = stats.bootstrap((a, b), lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                             **kw).confidence_interval  # type: ignore[arg-type]
        return np.asarray(ci.low), np.asarray(ci.high)

    def difference(ia: np.ndarray, ib: np.ndarray, axis: int) -> np.ndarray:
        ia, ib = ia.astype(np.intp), ib.astype(np.intp)  # once, not once per metric's gather
        return np.stack([np.mean(y[ib], axis=-1) - np.mean(x[ia], axis=-1) for x, y in zip(a, b)])

    index = np.int32 if max(a.shape[1], b.shape[1]) < 2**31 else np.int64  # half the bytes scipy resamples
    ci = stats.bootstrap((np.arange(a.shape[1], dtype=index), np.arange(b.shape[1], dtype=index)), difference,
                         **kw).confidence_interval  # type: ignore[arg-type]
    return np.asarray(ci.low), np.asarray(ci.high)


def _test(metric: str, a: np.ndarray, b: np.ndarray, ab: ABConfig, ci: tuple[float, float] | None = None
          ) -> dict[str, object]:
    """One metric's statistics; `ci`: its bootstrap interval if already computed."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        welch = stats.ttest_ind(b, a, equal_var=False).pvalue
        mwu = stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
        if ci is None:
            low, high = _bootstrap(a, b, ab)
            ci = (float(low), float(high))
    return dict(
        metric=metric, n_a=len(a), n_b=len(b), mean_a=float(a.mean()), mean_b=float(b.mean()),
        difference=float(b.mean() - a.mean()), ci_low=ci[0], ci_high=ci[1],
        hedges_g=hedges_g(a, b), welch_p=float(welch), mannwhitney_p=float(mwu),
    )


def _bootstrap_all(clean: Mapping[str, tuple[np.ndarray, np.ndarray]], ab: ABConfig) -> dict[str, tuple[float, float]]:
    """Each metric's bootstrap CI, metrics with the same sample sizes in one call (_bootstrap)."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for m, (x, y) in clean.items():
        by_size.setdefault((len(x), len(y)), []).append(m)
    out: dict[str, tuple[float, float]] = {}
    for names in by_size.values():
        if len(names) < 2:
            continue
        try:
            with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
                warnings.simplefilter("ignore")
                low, high = _bootstrap(np.stack([clean[m][0] for m in names]),
                                       np.stack([clean[m][1] for m in names]), ab)
        except ValueError:  # what a one-metric call would refuse too: each on its own below
            continue
        out.update({m: (float(lo), float(hi)) for m, lo, hi in zip(names, low, high)})
    return out


def compare_values(
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    ab: ABConfig = DEFAULT_AB,
    *,
    min_viewers: int = DEFAULT_CONFIG.min_viewers,
    labels: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Compare per-viewer values metric by metric (NaN values are left out)."""
    clean = {
        m: (np.asarray(a[m], dtype=np.float64), np.asarray(b[m], dtype=np.float64)) for m in a
    }
    clean = {m: (x[~np.isnan(x)], y[~np.isnan(y)]) for m, (x, y) in clean.items()}
    for m, (x, y) in clean.items():
        reason = below_floor(min(len(x), len(y)), min_viewers)
        if reason:
            return Comparison(labels[0], labels[1], (), f"Not shown: {reason} in a variant for {_name(m)}.", reason)
    cis = _bootstrap_all(clean, ab)
    rows = [_test(m, x, y, ab, cis.get(m)) for m, (x, y) in clean.items()]
    holm_p = holm([r["welch_p"] for r in rows])  # type: ignore[misc]
    holm_mw = holm([r["mannwhitney_p"] for r in rows])  # type: ignore[misc]
    alpha_first = ab.alpha / max(1, len(rows))
    results = []
    for r, hp, hm in zip(rows, holm_p, holm_mw):
        reliable = bool(hp < ab.alpha and (r["ci_low"] > 0 or r["ci_high"] < 0))  # type: ignore[operator]
        g = r["hedges_g"]
        need = n_per_group(g, alpha_first, ab.power) if not math.isnan(g) else None  # type: ignore[arg-type]
        results.append(MetricComparison(**r, holm_p=float(hp), holm_mannwhitney_p=float(hm), reliable=reliable,
                                        n_needed=need))  # type: ignore[arg-type]
    return Comparison(labels[0], labels[1], tuple(results), verdict(results, labels, ab))


def compare_variants(
    a: Sequence[SessionSummary],
    b: Sequence[SessionSummary],
    metrics: Sequence[str] = DEFAULT_METRICS,
    ab: ABConfig = DEFAULT_AB,
    *,
    min_viewers: int = DEFAULT_CONFIG.min_viewers,
    labels: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Compare two variants on their viewers' session summaries."""
    return compare_values(
        {m: [s.metric(m) for s in a] for m in metrics},
        {m: [s.metric(m) for s in b] for m in metrics},
        ab,
        min_viewers=min_viewers,
        labels=labels,
    )


def verdict(results: Sequence[MetricComparison], labels: tuple[str, str], ab: ABConfig = DEFAULT_AB) -> str:
    """A plain-language verdict that states only what the tests support."""
    la, lb = labels
    level = round(ab.confidence_level * 100)
    lines = []
    for r in results:
        if r.reliable:
            hi, lo = (lb, la) if r.difference > 0 else (la, lb)
            note = ""
            if not r.holm_mannwhitney_p < ab.alpha:
                note = f"; Mann-Whitney does not confirm it, Holm {_fmt_p(r.holm_mannwhitney_p)}"
            lines.append(
                f"{hi} scores higher than {lo} on {_name(r.metric)} (difference {lb}-{la} {r.difference:+.3f}, "
                f"{level} % CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}], g={r.hedges_g:.2f}, "
                f"Holm {_fmt_p(r.holm_p)}{note})."
            )
    unsure = [r for r in results if not r.reliable]
    if unsure:
        names = _join([_name(r.metric) for r in unsure])
        smallest = min((r.holm_p for r in unsure if not math.isnan(r.holm_p)), default=math.nan)
        lines.append(
            f"No reliable difference between {la} and {lb} on {names}"
            + (f" (smallest Holm {_fmt_p(smallest)})." if not math.isnan(smallest) else ".")
        )
        finite = [r for r in unsure if not math.isnan(r.hedges_g)]
        if finite:
            big = max(finite, key=lambda r: abs(r.hedges_g))
            n = min(big.n_a, big.n_b)
            if big.n_needed is None:
                lines.append(
                    f"The observed effects are too small to detect with any practical sample "
                    f"(largest: {_name(big.metric)}, g={big.hedges_g:.2f})."
                )
            elif n < big.n_needed:
                lines.append(
                    f"With n={n} per variant, an effect the size observed on {_name(big.metric)} "
                    f"(g={big.hedges_g:.2f}) needs about {big.n_needed:,} per variant to be detected "
                    f"{round(ab.power * 100)} % of the time."
                )
            else:
                lines.append(
                    f"n={n} per variant is large enough to detect an effect the size observed on "
                    f"{_name(big.metric)} (g={big.hedges_g:.2f}) {round(ab.power * 100)} % of the time, "
                    "yet it does not hold up after correcting for the metrics compared."
                )
    return " ".join(lines)


@dataclass(frozen=True, slots=True, eq=False)
class CurveDifference:
    """Per second: mean(B) - mean(A) of one metric with a Welch t CI band (NaN: suppressed)."""

    metric: str
    seconds: np.ndarray
    difference: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray
    suppressed: np.ndarray  # either variant below the floor in that second


def curve_difference(
    a: Rollups,
    b: Rollups,
    metric: str = "engagement",
    config: MetricConfig = DEFAULT_CONFIG,
    *,
    passes: int | str = 0,
    start_s: int | None = None,
    end_s: int | None = None,
) -> CurveDifference:
    """The per-second difference of a metric's curves, B minus A, each viewer counted once."""
    a, b = as_columns(a), as_columns(b)
    seconds = np.concatenate([a.second, b.second])
    start = start_s if start_s is not None else int(seconds.min()) if len(seconds) else 0
    end = end_s if end_s is not None else (int(seconds.max()) if len(seconds) else start - 1) + 1
    va = per_viewer_second_means(a, passes, start, end, (metric,))
    vb = per_viewer_second_means(b, passes, start, end, (metric,))
    xa, xb = va.means[metric], vb.means[metric]
    n_a = np.sum(~np.isnan(xa), axis=0)
    n_b = np.sum(~np.isnan(xb), axis=0)
    suppressed = (n_a < max(2, config.min_viewers)) | (n_b < max(2, config.min_viewers))
    diff = np.full(len(va.seconds), np.nan)
    low, high = diff.copy(), diff.copy()
    cols = ~suppressed
    if cols.any():
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            xa_, xb_ = xa[:, cols], xb[:, cols]
            diff[cols] = np.nanmean(xb_, axis=0) - np.nanmean(xa_, axis=0)
            policy = "omit" if np.isnan(xa_).any() or np.isnan(xb_).any() else "propagate"
            ci = stats.ttest_ind(xb_, xa_, equal_var=False, axis=0, nan_policy=policy).confidence_interval(
                config.confidence_level
            )
        low[cols], high[cols] = ci.low, ci.high
    return CurveDifference(metric, va.seconds, diff, low, high, n_a, n_b, suppressed)


def curve_difference_from_stats(
    a: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    metric: str = "engagement",
    config: MetricConfig = DEFAULT_CONFIG,
    *,
    start_s: int | None = None,
    end_s: int | None = None,
) -> CurveDifference:
    """curve_difference from each variant's per-second statistics of the per-viewer means
    (computed elsewhere, in SQL): (seconds, count, mean, sample variance) each. The Welch
    interval is ttest_ind(equal_var=False).confidence_interval's formula on those statistics,
    so the result equals curve_difference's on the rows behind them, to floating-point rounding.
    """
    seconds = np.concatenate([np.asarray(a[0], dtype=np.int64), np.asarray(b[0], dtype=np.int64)])
    start = start_s if start_s is not None else int(seconds.min()) if len(seconds) else 0
    end = end_s if end_s is not None else (int(seconds.max()) if len(seconds) else start - 1) + 1
    span = np.arange(start, max(start, end), dtype=np.int64)

    def spread(side: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sec = np.asarray(side[0], dtype=np.int64)
        inside = (sec >= start) & (sec < end)
        n, mean, var = np.zeros(len(span), dtype=np.int64), np.full(len(span), np.nan), np.full(len(span), np.nan)
        at = sec[inside] - start
        n[at], mean[at], var[at] = (np.asarray(x)[inside] for x in side[1:])
        return n, mean, var

    (n_a, mean_a, var_a), (n_b, mean_b, var_b) = spread(a), spread(b)
    suppressed = (n_a < max(2, config.min_viewers)) | (n_b < max(2, config.min_viewers))
    diff = np.full(len(span), np.nan)
    low, high = diff.copy(), diff.copy()
    cols = ~suppressed
    if cols.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            va, vb = np.maximum(var_a[cols], 0.0) / n_a[cols], np.maximum(var_b[cols], 0.0) / n_b[cols]
            df = (va + vb) ** 2 / (va**2 / (n_a[cols] - 1) + vb**2 / (n_b[cols] - 1))
            df = np.where(np.isnan(df), 1.0, df)  # no spread in either: any df (as scipy does)
            d = mean_b[cols] - mean_a[cols]
            half = stats.t.ppf(0.5 + config.confidence_level / 2, df) * np.sqrt(va + vb)
        diff[cols], low[cols], high[cols] = d, d - half, d + half
    return CurveDifference(metric, span, diff, low, high, n_a, n_b, suppressed)

"""Analytics results (analytics/ dataclasses) -> API messages."""

from __future__ import annotations

import math
from collections.abc import Iterable

from affectline.analytics import Comparison, CurveDifference, Moment, Norm, SuppressedSpan, VideoCurves
from affectline.v1 import analytics_pb2


def spans(items: Iterable[SuppressedSpan]) -> list[analytics_pb2.SuppressedSpan]:
    return [analytics_pb2.SuppressedSpan(start_s=s.start_s, end_s=s.end_s, reason=s.reason) for s in items]


def curves_message(c: VideoCurves) -> analytics_pb2.Curves:
    return analytics_pb2.Curves(
        seconds=c.seconds.tolist(),
        viewers=c.viewers.tolist(),
        attention_share=c.attention_share.tolist(),
        metrics=[
            analytics_pb2.MetricCurve(metric=name, mean=m.mean.tolist(), ci_low=m.ci_low.tolist(),
                                      ci_high=m.ci_high.tolist(), viewers=m.viewers.tolist())
            for name, m in c.curves.items()
        ],
        suppressed=spans(c.suppressed_spans),
        sessions=c.sessions,
        min_viewers=c.min_viewers,
        confidence_level=c.confidence_level,
    )


def moment_message(m: Moment) -> analytics_pb2.KeyMoment:
    return analytics_pb2.KeyMoment(metric=m.metric, kind=m.kind, start_s=m.start_s, end_s=m.end_s, peak_s=m.peak_s,
                                   value=m.value, size=m.size, viewers=m.viewers, min_viewers=m.min_viewers)


def comparison_rows(c: Comparison) -> list[analytics_pb2.MetricComparison]:
    return [
        analytics_pb2.MetricComparison(
            metric=r.metric, n_a=r.n_a, n_b=r.n_b, mean_a=r.mean_a, mean_b=r.mean_b, difference=r.difference,
            ci_low=r.ci_low, ci_high=r.ci_high, hedges_g=r.hedges_g, welch_p=r.welch_p,
            mannwhitney_p=r.mannwhitney_p, holm_p=r.holm_p, holm_mannwhitney_p=r.holm_mannwhitney_p,
            reliable=r.reliable, n_needed=r.n_needed or 0,
        )
        for r in c.metrics
    ]


def sample_size_warning(verdict: str) -> str:
    """The verdict's minimum-sample sentence (analytics.ab_test.verdict writes it), or ""."""
    sentences = [s if s.endswith(".") else s + "." for s in verdict.split(". ")]
    return " ".join(s for s in sentences if s.startswith(("With n=", "The observed effects are too small")))


def difference_message(d: CurveDifference) -> analytics_pb2.CurveDifference:
    return analytics_pb2.CurveDifference(
        metric=d.metric, seconds=d.seconds.tolist(), difference=d.difference.tolist(), ci_low=d.ci_low.tolist(),
        ci_high=d.ci_high.tolist(), n_a=d.n_a.tolist(), n_b=d.n_b.tolist(), suppressed=d.suppressed.tolist(),
    )


def norm_message(n: Norm) -> analytics_pb2.Norm:
    out = analytics_pb2.Norm(metric=n.metric, score=n.score, norm_size=n.norm_size)
    if n.percentile is not None and not math.isnan(n.percentile):
        out.percentile = n.percentile
    return out

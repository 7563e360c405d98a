"""Audience analytics: metric definitions, rollups, curves, key moments, A/B tests, norms.

Pure functions over records and numpy arrays; no I/O. Definitions: docs/metrics.md.
"""

from affectline.analytics.ab_test import (
    ABConfig,
    Comparison,
    CurveDifference,
    MetricComparison,
    compare_values,
    compare_variants,
    curve_difference,
    hedges_g,
    holm,
    n_per_group,
    power_two_sample,
)
from affectline.analytics.curves import (
    MetricCurve,
    VideoCurves,
    attention_shares,
    filter_attention,
    mean_ci,
    video_curves,
)
from affectline.analytics.definitions import (
    DEFAULT_CONFIG,
    FrameArrays,
    FrameMetrics,
    MetricConfig,
    frame_arrays,
    frame_metrics,
)
from affectline.analytics.moments import Moment, find_moments, key_moments
from affectline.analytics.norms import Norm, headline_score, percentile_among, video_norms
from affectline.analytics.rollup import (
    METRICS,
    RollupColumns,
    SecondRollup,
    SeekState,
    ViewerSeconds,
    assign_passes,
    combine,
    per_viewer_second_means,
    rollup_session,
    select_passes,
)
from affectline.analytics.session_summary import SessionSummary, summarize_session, summarize_sessions
from affectline.analytics.suppression import SuppressedSpan, below_floor

__all__ = [
    "ABConfig", "Comparison", "CurveDifference", "DEFAULT_CONFIG", "FrameArrays", "FrameMetrics", "METRICS",
    "MetricComparison", "MetricConfig", "MetricCurve", "Moment", "Norm", "RollupColumns", "SecondRollup", "SeekState",
    "SessionSummary", "SuppressedSpan", "VideoCurves", "ViewerSeconds", "assign_passes", "attention_shares",
    "below_floor", "combine", "compare_values", "compare_variants", "curve_difference", "filter_attention",
    "find_moments", "frame_arrays", "frame_metrics", "headline_score", "hedges_g", "holm", "key_moments",
    "mean_ci", "n_per_group", "per_viewer_second_means", "percentile_among", "power_two_sample",
    "rollup_session", "select_passes", "summarize_session", "summarize_sessions", "video_curves", "video_norms",
]

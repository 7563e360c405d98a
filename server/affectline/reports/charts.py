"""The report's charts: API answers -> Chart specs -> PNG (matplotlib, Agg, no pyplot state).

A Chart holds exactly the numbers it plots, so the report embeds the same spec as JSON next to
the image (render.py): what is drawn can be checked against the API. The panels follow the
dashboard's (client_js/src/dashboard/curves.ts): second s is drawn at s + 0.5, NaN is a gap,
CI bands are shaded, suppressed seconds are greyed.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from matplotlib.figure import Figure

from affectline.storage.records import EMOTIONS
from affectline.v1 import analytics_pb2 as pb

# The dashboard's colours (client_js/src/dashboard/format.ts).
EMOTION_COLOURS = {"angry": "#d55e00", "disgust": "#009e73", "fear": "#cc79a7", "happy": "#e69f00",
                   "sad": "#0072b2", "surprise": "#56b4e9", "neutral": "#8c8c8c"}
VALENCE, ENGAGEMENT, ATTENTION, VIEWERS = "#6a3d9a", "#1f78b4", "#33a02c", "#444444"
VARIANT_COLOURS = ("#1f78b4", "#e31a1c")
SEGMENT_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
WIDTH_IN = 7.0
DPI = 150


def _values(xs: Iterable[float]) -> list[float | None]:
    """NaN (suppressed or undefined) -> None: a gap in the chart, null in the JSON."""
    return [None if math.isnan(v) else float(v) for v in xs]


@dataclass
class Line:
    label: str
    colour: str
    values: list[float | None]
    low: list[float | None] | None = None  # CI band
    high: list[float | None] | None = None
    dashed: bool = False


@dataclass
class Panel:
    title: str  # with its unit
    lines: list[Line]
    y_range: tuple[float, float] | None = None
    zero_line: bool = False
    height: float = 1.0  # relative


@dataclass
class Chart:
    key: str
    seconds: list[int]
    panels: list[Panel]
    suppressed: list[tuple[int, int]] = field(default_factory=list)  # [start_s, end_s)
    markers: list[tuple[int, str]] = field(default_factory=list)  # (second, label): key moments

    @property
    def x(self) -> list[float]:
        return [s + 0.5 for s in self.seconds]

    def data(self) -> dict[str, Any]:
        """The plotted numbers, JSON-ready (None for gaps)."""
        return {"seconds": self.seconds, "x": self.x, "suppressed": [list(s) for s in self.suppressed],
                "markers": [list(m) for m in self.markers], "panels": [asdict(p) for p in self.panels]}


def _metric(c: pb.Curves, name: str) -> pb.MetricCurve | None:
    return next((m for m in c.metrics if m.metric == name), None)


def _metric_line(m: pb.MetricCurve, label: str, colour: str, dashed: bool = False) -> Line:
    return Line(label, colour, _values(m.mean), _values(m.ci_low), _values(m.ci_high), dashed)


def _spans(spans: Iterable[pb.SuppressedSpan]) -> list[tuple[int, int]]:
    return [(int(s.start_s), int(s.end_s)) for s in spans]


def emotion_chart(c: pb.Curves, moments: Sequence[tuple[int, str]] = ()) -> Chart:
    lines = [_metric_line(m, e, EMOTION_COLOURS[e]) for e in EMOTIONS if (m := _metric(c, e)) is not None]
    panel = Panel("Emotions: mean probability 0-1, 95 % CI shaded", lines, (0.0, 1.0), height=1.6)
    return Chart("emotions", list(c.seconds), [panel], _spans(c.suppressed), list(moments))


def engagement_chart(c: pb.Curves, moments: Sequence[tuple[int, str]] = ()) -> Chart:
    valence, engagement, attention = _metric(c, "valence"), _metric(c, "engagement"), _metric(c, "attention")
    panels = [
        Panel("Valence: -1 negative ... +1 positive, 95 % CI shaded",
              [_metric_line(valence, "valence", VALENCE)] if valence else [], (-1.0, 1.0), zero_line=True),
        Panel("Engagement and attention: share 0-1, 95 % CI shaded", [
            *([_metric_line(engagement, "engagement", ENGAGEMENT)] if engagement else []),
            _metric_line(attention, "attention share", ATTENTION, dashed=True) if attention
            else Line("attention share", ATTENTION, _values(c.attention_share), dashed=True),
        ], (0.0, 1.0)),
        Panel("Viewers present per second", [Line("viewers", VIEWERS, [float(v) for v in c.viewers])], height=0.6),
    ]
    return Chart("engagement", list(c.seconds), panels, _spans(c.suppressed), list(moments))


def ab_chart(comparison: pb.CompareVariantsResponse, curves: dict[str, pb.Curves]) -> Chart:
    d = comparison.curve_difference
    a, b = comparison.variant_a, comparison.variant_b
    seconds = list(d.seconds)
    variant_lines = []
    for v, colour in zip((a, b), VARIANT_COLOURS):
        c = curves.get(v)
        m = _metric(c, d.metric) if c is not None else None
        if m is None:
            continue
        by_second = dict(zip(c.seconds, range(len(c.seconds))))  # align with the difference's seconds
        pick = [by_second.get(s) for s in seconds]
        variant_lines.append(Line(
            f"variant {v or '(default)'}", colour,
            [None if i is None else _values([m.mean[i]])[0] for i in pick],
            [None if i is None else _values([m.ci_low[i]])[0] for i in pick],
            [None if i is None else _values([m.ci_high[i]])[0] for i in pick]))
    panels = [
        Panel(f"{d.metric} per variant: 95 % CI shaded", variant_lines, (0.0, 1.0)),
        Panel(f"Difference {b or '(default)'} - {a or '(default)'} in {d.metric}: Welch 95 % CI shaded",
              [Line("difference", "#333333", _values(d.difference), _values(d.ci_low), _values(d.ci_high))],
              zero_line=True),
    ]
    suppressed = [(s, s + 1) for s, off in zip(seconds, d.suppressed) if off]
    return Chart("ab", seconds, panels, suppressed)


def segment_chart(segments: Sequence[tuple[str, pb.GetSegmentsResponse]], metric: str = "engagement") -> Chart:
    """One panel per field: the metric's mean line of each segment that is not suppressed."""
    seconds: list[int] = []
    panels = []
    for name, answer in segments:
        lines = []
        for i, s in enumerate(seg for seg in answer.segments if not seg.suppressed):
            m = _metric(s.curves, metric)
            if m is None:
                continue
            if len(s.curves.seconds) > len(seconds):
                seconds = list(s.curves.seconds)
            lines.append(Line(f"{s.value or '(none given)'} (n={s.viewers})", SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)],
                              _values(m.mean)))
        panels.append(Panel(f"{metric} by {name}: mean, 0-1", lines, (0.0, 1.0)))
    return Chart("segments", seconds, panels)


def _nan(values: Sequence[float | None] | None) -> list[float]:
    return [math.nan if v is None else v for v in (values or [])]


def png(chart: Chart, width_in: float = WIDTH_IN, dpi: int = DPI) -> bytes:
    """The chart as a PNG: panels stacked on one time axis."""
    heights = [p.height for p in chart.panels] or [1.0]
    fig = Figure(figsize=(width_in, 0.3 + 1.9 * sum(heights)), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    x = chart.x
    for ax, panel in zip(axes, chart.panels):
        for start, end in chart.suppressed:
            ax.axvspan(start, end, color="#dddddd", lw=0, zorder=0)
        for second, label in chart.markers:
            ax.axvline(second + 0.5, color="#999999", lw=0.8, ls=":", zorder=1)
            if ax is axes[0]:
                ax.annotate(label, (second + 0.5, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                            fontsize=7, color="#555555")
        for line in panel.lines:
            xs = x[: len(line.values)]
            if line.low is not None and line.high is not None:
                ax.fill_between(xs, _nan(line.low), _nan(line.high), color=line.colour, alpha=0.18, lw=0, zorder=2)
            ax.plot(xs, _nan(line.values), color=line.colour, lw=1.4, ls="--" if line.dashed else "-",
                    label=line.label, zorder=3)
        if panel.zero_line:
            ax.axhline(0.0, color="#888888", lw=0.7, zorder=1)
        if panel.y_range is not None:
            ax.set_ylim(*panel.y_range)
        elif any(v is not None for line in panel.lines for v in line.values):
            ax.set_ylim(bottom=0.0 if not panel.zero_line else None)
        ax.set_title(panel.title, fontsize=8.5, loc="left", pad=13 if chart.markers and ax is axes[0] else 4)
        ax.tick_params(labelsize=7)
        ax.grid(True, color="#eeeeee", lw=0.6)
        if panel.lines:
            ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            ax.text(0.5, 0.5, "nothing to show under this filter", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="#777777")
    if chart.seconds:
        axes[-1].set_xlim(chart.seconds[0], chart.seconds[-1] + 1)
    axes[-1].set_xlabel("video time (s)", fontsize=7.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def data_uri(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"

"""ReportData -> one self-contained HTML document (charts and frames as data: URIs, CSS inline,
no scripts, nothing fetched) -> PDF (WeasyPrint, allowed to read data: URIs only)."""

from __future__ import annotations

import json
import logging
import math
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from google.protobuf.json_format import MessageToDict
from jinja2 import Environment
from markupsafe import Markup

from affectline.reports import PdfUnavailable
from affectline.reports import charts as ch
from affectline.reports._template import CSS, TEMPLATE
from affectline.reports.data import ReportData
from affectline.reports.thumbnails import frames_at

LABELS = {"attention_share": "attention share", "attention": "attention share"}
ABOUT = {
    "engagement": "attention x (1 - p(neutral)), 0-1",
    "sentiment": "valence while looking at the screen, -1..+1",
    "attention_share": "share of time looking roughly at the screen, 0-1",
    "expressiveness": "1 - p(neutral), 0-1",
}
PDF_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0"
_env = Environment(autoescape=True, trim_blocks=False, lstrip_blocks=False)
_template = _env.from_string(TEMPLATE)


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


# Number formats: the report's figures as text (docs/reports.md, "Numbers").
def score(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def signed(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.3f}"


def percent(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.0f} %"


def p_value(v: float) -> str:
    return "n/a" if math.isnan(v) else ("< 0.001" if v < 0.001 else f"{v:.3f}")


def clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _clean(value: Any) -> Any:
    """NaN -> None, recursively: the JSON block stays valid JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json_block(data: dict[str, Any]) -> Markup:
    """JSON inside <script type="application/json">: '<', '>' and '&' escaped so no tag can close it."""
    text = json.dumps(_clean(data), allow_nan=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _filter_text(d: ReportData) -> str:
    f = MessageToDict(d.request.filter, preserving_proto_field_name=True)
    if not f:
        return "none (every viewer, first viewing of each second)"
    return "; ".join(f"{k} = {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in f.items())


def _version() -> str:
    try:
        return version("affectline")
    except PackageNotFoundError:
        return "dev"


def context(d: ReportData) -> dict[str, Any]:
    """Everything the template shows, formatted; `data` is the JSON block's content."""
    c = d.curves
    numbered = sorted(d.moments.moments, key=lambda m: (m.peak_s, m.metric))
    at: dict[int, list[str]] = {}  # moments sharing a second share one marker: "12,13,14"
    for i, m in enumerate(numbered, 1):
        at.setdefault(int(m.peak_s), []).append(str(i))
    markers = [(second, ",".join(numbers)) for second, numbers in at.items()]
    frames = frames_at(d.media_path, [m.peak_s + 0.5 for m in numbered])
    charts = {"emotions": ch.emotion_chart(c, markers), "engagement": ch.engagement_chart(c, markers)}
    if d.ab is not None and not d.ab.comparison.suppressed_reason:
        charts["ab"] = ch.ab_chart(d.ab.comparison, d.ab.curves)
    segment_chart = ch.segment_chart(d.segments)
    if any(p.lines for p in segment_chart.panels):
        charts["segments"] = segment_chart
    selected = set(d.request.variants)
    variants = [{"name": v.variant_id or "(default)", "viewers": v.viewers, "selected": v.variant_id in selected}
                for v in (d.campaign.variants if d.campaign else [])]
    viewers = list(c.viewers)
    headline = [{"label": label(n.metric), "score": score(n.score),
                 "percentile": percent(n.percentile if n.HasField("percentile") else None),
                 "norm_size": n.norm_size, "about": ABOUT.get(n.metric, "")} for n in d.norms]
    moments = [{"number": i, "metric": label(m.metric), "kind": m.kind, "at": clock(m.peak_s),
                "span": f"{m.start_s}-{m.end_s}", "value": score(m.value), "size": score(m.size),
                "viewers": f"{m.viewers} ({m.min_viewers})",
                "thumb": ch.data_uri(frames[m.peak_s + 0.5], "image/jpeg") if m.peak_s + 0.5 in frames else None}
               for i, m in enumerate(numbered, 1)]
    ab = None
    if d.ab is not None:
        r = d.ab.comparison
        a, b = r.variant_a or "(default)", r.variant_b or "(default)"
        ab = {"a": a, "b": b, "metric": r.curve_difference.metric or "engagement", "verdict": r.verdict,
              "warning": r.sample_size_warning, "suppressed_reason": r.suppressed_reason,
              "rows": [{"metric": label(m.metric), "n_a": m.n_a, "n_b": m.n_b, "mean_a": score(m.mean_a),
                        "mean_b": score(m.mean_b), "difference": signed(m.difference), "ci_low": signed(m.ci_low),
                        "ci_high": signed(m.ci_high), "g": signed(m.hedges_g), "welch": p_value(m.holm_p),
                        "mwu": p_value(m.holm_mannwhitney_p), "reliable": "yes" if m.reliable else "no",
                        "n_needed": m.n_needed or "-"} for m in r.metrics]}
    segments = [{"name": name, "rows": [{"value": s.value or "(none given)", "viewers": s.viewers,
                                         "status": f"withheld: {s.reason}" if s.suppressed else "shown"}
                                        for s in answer.segments]} for name, answer in d.segments]
    data = {
        "video_id": d.request.video_id, "title": d.title, "synthetic": d.synthetic,
        "generated_at": d.generated_at.isoformat(),
        "filter": MessageToDict(d.request.filter, preserving_proto_field_name=True),
        "sessions": c.sessions, "min_viewers": c.min_viewers,
        "headline": [{"metric": n.metric, "score": n.score,
                      "percentile": n.percentile if n.HasField("percentile") else None, "norm_size": n.norm_size}
                     for n in d.norms],
        "moments": [MessageToDict(m, preserving_proto_field_name=True) for m in numbered],
        "ab": MessageToDict(d.ab.comparison, preserving_proto_field_name=True) if d.ab else None,
        "charts": {k: v.data() for k, v in charts.items()},
    }
    return {
        "version": _version(), "title": d.title, "video_id": d.request.video_id, "synthetic": d.synthetic,
        "generated": d.generated_at.strftime("%Y-%m-%d %H:%M UTC"), "css": Markup(CSS),
        "variants": variants, "filter_text": _filter_text(d), "sessions": c.sessions,
        "viewers_range": f"{min(viewers)}-{max(viewers)} over {len(viewers)} s" if viewers else "no seconds watched",
        "last_session": (d.campaign.last_session_at.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")
                         if d.campaign is not None and d.campaign.HasField("last_session_at") else "none"),
        "min_viewers": c.min_viewers, "headline": headline,
        "charts": {k: ch.data_uri(ch.png(v)) for k, v in charts.items()},
        "suppressed": list(c.suppressed), "moments": moments, "thumbnails": bool(frames),
        "thumbnail_note": ("No video file is registered for this video (affectline videos add), so no frames are shown."
                           if d.media_path is None else f"The video file could not be read for frames: {d.media_path}"),
        "ab": ab, "ab_note": d.ab_note, "segments": segments, "data_json": _json_block(data),
    }


def render_html(d: ReportData) -> str:
    return _template.render(**context(d))


def render_pdf(html: str) -> bytes:
    """The HTML as PDF; PdfUnavailable (naming what to install) when WeasyPrint cannot run here."""
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # ten INFO lines a report
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher
    except ImportError as exc:
        raise PdfUnavailable("PDF reports need the Python package weasyprint (pip install weasyprint) "
                             f"and the system packages {PDF_PACKAGES}: {exc}") from exc
    except OSError as exc:  # WeasyPrint loads Pango with ctypes at import
        raise PdfUnavailable(f"PDF reports need the system packages {PDF_PACKAGES} (apt-get install "
                             f"{PDF_PACKAGES}, or scripts/system_deps.sh): {exc}") from exc
    fetcher = URLFetcher(allowed_protocols={"data"})  # the report is self-contained: nothing else is read
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()

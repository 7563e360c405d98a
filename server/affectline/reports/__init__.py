"""Campaign reports: one self-contained HTML file, or a PDF of it (docs/reports.md).

params.py reads what is asked (filters as the dashboard's URL names them), data.py asks the
AnalyticsService for every number, charts.py and thumbnails.py draw, render.py writes HTML and
PDF, route.py serves `GET /api/report`. `affectline report` is commands/report.py.
"""

from __future__ import annotations

import asyncio

from affectline.reports.data import Analytics, ReportData, Videos, gather
from affectline.reports.params import ReportRequest, report_request, split_pairs

FORMATS = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


class PdfUnavailable(RuntimeError):
    """WeasyPrint or the system libraries it loads are missing; the message says what to install."""


def render_report(data: ReportData, fmt: str) -> bytes:
    """The report as `fmt` ("html" or "pdf"): CPU work (charts, PDF layout), run it off the event loop.
    matplotlib, Jinja2 and WeasyPrint load here, on the first report, not when the server starts."""
    from affectline.reports.render import render_html, render_pdf

    html = render_html(data)
    return render_pdf(html) if fmt == "pdf" else html.encode("utf-8")


async def build_report(service: Analytics, videos: Videos, request: ReportRequest, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"format must be html or pdf, got {fmt!r}")
    data = await gather(service, videos, request)
    return await asyncio.to_thread(render_report, data, fmt)


__all__ = ["FORMATS", "Analytics", "PdfUnavailable", "ReportData", "ReportRequest", "Videos", "build_report", "gather",
           "render_report", "report_request", "split_pairs"]

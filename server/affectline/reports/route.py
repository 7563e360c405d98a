"""`GET /api/report?video=ID&format=html|pdf&<filters>`: the report of `affectline report`, over HTTP.

The API key goes in the `Authorization: Bearer` header (never in the URL) and needs the
AnalyticsService's scope (analytics:read), checked by the same authorize function as every
RPC. Filters are the dashboard's URL parameters (params.py); `a` and `b` name the A/B
section's variants. Errors are JSON {"code", "message"} with the matching HTTP status.
One report is rendered at a time per server: charts and PDF layout take CPU seconds, and
the event loop stays free for live sessions (the rendering runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import re

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from affectline.auth.authenticator import Authorize
from affectline.reports import FORMATS, PdfUnavailable, build_report
from affectline.reports.data import Analytics, Videos
from affectline.reports.params import report_request
from affectline.serving.api_http import attachment, filter_pairs, refused
from affectline.serving.api_http import error as _error

PATH = "/api/report"
SERVICE = "affectline.v1.AnalyticsService"  # the scope rule of the data the report shows
# The opened HTML may show its inline styles and data: images, and nothing else.
HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def report_routes(service: Analytics, videos: Videos, authorize: Authorize) -> list[BaseRoute]:
    one_at_a_time = asyncio.Semaphore(1)

    async def report(request: Request) -> Response:
        if (denied := await refused(request, authorize, SERVICE)) is not None:
            return denied
        q = request.query_params
        fmt = q.get("format", "html")
        if fmt not in FORMATS:
            return _error(Code.INVALID_ARGUMENT, f"format must be html or pdf, got {fmt!r}")
        a, b = q.get("a"), q.get("b")
        if (a is None) != (b is None):
            return _error(Code.INVALID_ARGUMENT, "a and b name the two variants to compare: give both or neither")
        pairs = filter_pairs(request, "format", "a", "b")
        try:
            wanted = report_request(q.get("video", ""), pairs, compare=(a, b) if a is not None and b is not None else None)
        except ValueError as exc:
            return _error(Code.INVALID_ARGUMENT, str(exc))
        try:
            async with one_at_a_time:
                body = await build_report(service, videos, wanted, fmt)
        except ConnectError as exc:
            return _error(exc.code, exc.message)
        except PdfUnavailable as exc:
            return _error(Code.UNAVAILABLE, str(exc))
        name = f"{_SAFE_NAME.sub('_', wanted.video_id)}-report.{fmt}"
        headers = attachment(name)
        if fmt == "html":
            headers["Content-Security-Policy"] = HTML_CSP
        return Response(body, media_type=FORMATS[fmt], headers=headers)

    return [Route(PATH, report, methods=["GET"])]

"""`GET /api/export?video=ID&format=csv|parquet&table=curves|summaries|timelines&<filters>`: the
ExportAnalytics RPC over plain HTTP, for the dashboard's export buttons.

Authenticated like /api/report (serving/api_http.py: `Authorization: Bearer`, analytics:read);
the filters are the dashboard's URL parameters (reports/params.py). The answer streams the
RPC's chunks as they come, with the RPC's content type and `Content-Disposition: attachment`
naming the file. Errors found before the first byte (bad parameters, unknown video, a summary
below the viewer floor) are JSON {"code", "message"} with the matching status; a failure later
cuts the download short (the status was already sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from affectline.auth.authenticator import Authorize
from affectline.reports.params import parse_filter
from affectline.serving.api_http import attachment, error, filter_pairs, refused
from affectline.v1 import analytics_pb2

PATH = "/api/export"
SERVICE = "affectline.v1.AnalyticsService"  # ExportAnalytics' scope rule
TABLES = {"curves": analytics_pb2.EXPORT_TABLE_CURVES, "summaries": analytics_pb2.EXPORT_TABLE_SUMMARIES,
          "timelines": analytics_pb2.EXPORT_TABLE_TIMELINES}
FORMATS = {"csv": analytics_pb2.EXPORT_FORMAT_CSV, "parquet": analytics_pb2.EXPORT_FORMAT_PARQUET}


class Exporter(Protocol):
    def export_analytics(self, request: analytics_pb2.ExportRequest, ctx: object = None
                         ) -> AsyncIterator[analytics_pb2.ExportChunk]: ...


def export_routes(service: Exporter, authorize: Authorize) -> list[BaseRoute]:
    async def export_file(request: Request) -> Response:
        if (denied := await refused(request, authorize, SERVICE)) is not None:
            return denied
        q = request.query_params
        table, fmt = q.get("table", "curves"), q.get("format", "csv")
        if table not in TABLES:
            return error(Code.INVALID_ARGUMENT, f"table must be one of {', '.join(TABLES)}, got {table!r}")
        if fmt not in FORMATS:
            return error(Code.INVALID_ARGUMENT, f"format must be csv or parquet, got {fmt!r}")
        if not q.get("video"):
            return error(Code.INVALID_ARGUMENT, "video is required")
        try:
            f = parse_filter(filter_pairs(request, "table", "format"))
        except ValueError as exc:
            return error(Code.INVALID_ARGUMENT, str(exc))
        chunks = aiter(service.export_analytics(
            analytics_pb2.ExportRequest(video_id=q["video"], what=TABLES[table], format=FORMATS[fmt], filter=f)))
        try:
            first = await anext(chunks)
        except ConnectError as exc:
            return error(exc.code, exc.message)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield first.data
                async for chunk in chunks:
                    yield chunk.data
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

        return StreamingResponse(body(), media_type=first.content_type, headers=attachment(first.file_name))

    return [Route(PATH, export_file, methods=["GET"])]

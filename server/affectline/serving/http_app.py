"""The HTTP side: gRPC-web + Connect + JSON for our services, JSON-RPC, metrics, health, pages.

One ASGI app. Paths under "/<service full name>/" go to connectrpc's application for
that service (it speaks Connect, gRPC-web and gRPC); everything else to Starlette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from affectline.metrics import Metrics
from affectline.serving.instrumented import InstrumentedService
from affectline.serving.jsonrpc import DEFAULT_MAX_BODY_BYTES, JsonRpcEndpoint
from affectline.serving.rpc_methods import ServiceBinding
from affectline.v1.analytics_connect import AnalyticsServiceASGIApplication
from affectline.v1.session_connect import SessionServiceASGIApplication

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# connectrpc's generated ASGI application class for each of our services.
CONNECT_APPS: dict[str, Callable[..., Any]] = {
    "affectline.v1.SessionService": SessionServiceASGIApplication,
    "affectline.v1.AnalyticsService": AnalyticsServiceASGIApplication,
}


class RpcRouter:
    """Sends RPC paths to the Connect applications and the rest to `fallback`."""

    def __init__(self, rpc_apps: dict[str, ASGIApp], fallback: ASGIApp) -> None:
        self._rpc_apps = {f"/{name}/": app for name, app in rpc_apps.items()}
        self._fallback = fallback

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, app in self._rpc_apps.items():
                if path.startswith(prefix):
                    await app(scope, receive, send)
                    return
        await self._fallback(scope, receive, send)


def build_http_app(
    bindings: list[ServiceBinding],
    metrics: Metrics,
    *,
    health_check: Callable[[], Awaitable[dict[str, Any]]],
    static_dir: Path = STATIC_DIR,
    extra_routes: Sequence[BaseRoute] = (),
    max_request_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ASGIApp:
    """max_request_bytes caps every request body: connectrpc refuses a larger Connect or
    gRPC-web message with resource_exhausted while reading it, JSON-RPC with HTTP 413."""
    connect_apps: dict[str, ASGIApp] = {}
    jsonrpc_bindings = []
    for binding in bindings:
        connect_apps[binding.name] = CONNECT_APPS[binding.name](
            InstrumentedService(binding, metrics, transport="connect"), read_max_bytes=max_request_bytes
        )
        jsonrpc_bindings.append((binding, InstrumentedService(binding, metrics, transport="jsonrpc")))

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        report = await health_check()
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    site = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
            Route("/jsonrpc", JsonRpcEndpoint(jsonrpc_bindings, max_body_bytes=max_request_bytes).handle, methods=["POST"]),
            *extra_routes,  # the viewer pages (serving/pages.py)
            Mount("/", StaticFiles(directory=static_dir, html=True), name="static"),
        ]
    )
    return RpcRouter(connect_apps, site)

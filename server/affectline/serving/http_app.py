"""The HTTP side: gRPC-web + Connect + JSON for our services, JSON-RPC, metrics, health, pages.

One ASGI app. Paths under "/<service full name>/" go to connectrpc's application for
that service (it speaks Connect, gRPC-web and gRPC); everything else to Starlette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from connectrpc.request import RequestContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from affectline.auth.authenticator import Authorize
from affectline.metrics import Metrics
from affectline.serving.client_watch import ClientWatch
from affectline.serving.instrumented import InstrumentedService
from affectline.serving.jsonrpc import DEFAULT_MAX_BODY_BYTES, JsonRpcEndpoint
from affectline.serving.rpc_methods import ServiceBinding
from affectline.v1.analytics_connect import AnalyticsServiceASGIApplication
from affectline.v1.live_connect import LiveServiceASGIApplication
from affectline.v1.recording_connect import RecordingServiceASGIApplication
from affectline.v1.session_connect import SessionServiceASGIApplication
from affectline.v1.webhooks_connect import WebhookServiceASGIApplication

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# connectrpc's generated ASGI application class for each of our services.
CONNECT_APPS: dict[str, Callable[..., Any]] = {
    "affectline.v1.SessionService": SessionServiceASGIApplication,
    "affectline.v1.AnalyticsService": AnalyticsServiceASGIApplication,
    "affectline.v1.LiveService": LiveServiceASGIApplication,
    "affectline.v1.WebhookService": WebhookServiceASGIApplication,
    "affectline.v1.RecordingService": RecordingServiceASGIApplication,
}


class ApiKeyCheck:
    """connectrpc metadata interceptor: checks the Authorization header of a Connect, gRPC-web
    or gRPC call. Put first, it runs before the request body is read, and connectrpc sends its
    ConnectError in each protocol's own form."""

    def __init__(self, authorize: Authorize) -> None:
        self._authorize = authorize

    async def on_start(self, ctx: RequestContext) -> None:
        await self._authorize(ctx.method.service_name, ctx.request_headers.get("authorization"))

    async def on_end(self, token: None, ctx: RequestContext, error: Exception | None) -> None:
        return None


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
                    if _needs_trailers(scope):
                        await _no_trailers(send)
                        return
                    await app(scope, receive, send)
                    return
        await self._fallback(scope, receive, send)


def _needs_trailers(scope: dict) -> bool:
    """Native gRPC (application/grpc, not grpc-web) over a connection without ASGI trailers
    (HTTP/1.1): connectrpc raises there, which was a 500 without a status (tests/test_fuzz.py)."""
    content_type = dict(scope.get("headers") or ()).get(b"content-type", b"").lower()
    return (content_type.startswith(b"application/grpc") and not content_type.startswith(b"application/grpc-web")
            and "http.response.trailers" not in (scope.get("extensions") or {}))


async def _no_trailers(send: Callable) -> None:
    message = b"native gRPC is served on the gRPC port; this port speaks gRPC-web, Connect and JSON-RPC"
    await send({"type": "http.response.start", "status": 415, "headers": [
        (b"content-type", b"text/plain"), (b"grpc-status", b"12"), (b"grpc-message", message.replace(b" ", b"%20"))]})
    await send({"type": "http.response.body", "body": message + b"\n"})


def build_http_app(
    bindings: list[ServiceBinding],
    metrics: Metrics,
    *,
    health_check: Callable[[], Awaitable[dict[str, Any]]],
    authorize: Authorize,
    static_dir: Path = STATIC_DIR,
    extra_routes: Sequence[BaseRoute] = (),
    max_request_bytes: int = DEFAULT_MAX_BODY_BYTES,
    read_timeout_s: float | None = None,
) -> ASGIApp:
    """max_request_bytes caps every request body: connectrpc refuses a larger Connect or
    gRPC-web message with resource_exhausted while reading it, JSON-RPC with HTTP 413.
    read_timeout_s: a request body that stalls this long reads as a disconnect (client_watch.py).
    authorize checks each call's API key (auth/authenticator.py), on every transport here."""
    connect_apps: dict[str, ASGIApp] = {}
    jsonrpc_bindings = []
    for binding in bindings:
        connect_apps[binding.name] = CONNECT_APPS[binding.name](
            InstrumentedService(binding, metrics, transport="connect"), read_max_bytes=max_request_bytes,
            interceptors=(ApiKeyCheck(authorize),)
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
            Route("/jsonrpc", JsonRpcEndpoint(jsonrpc_bindings, authorize=authorize, max_body_bytes=max_request_bytes).handle, methods=["POST"]),
            *extra_routes,  # the viewer pages (serving/pages.py)
            Mount("/", StaticFiles(directory=static_dir, html=True), name="static"),
        ]
    )
    streaming = [m.path for b in bindings for m in b.methods() if m.server_streaming]
    return ClientWatch(RpcRouter(connect_apps, site), read_timeout_s=read_timeout_s, streaming_paths=streaming)

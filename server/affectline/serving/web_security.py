"""HTTP response hardening: security headers on every answer, CORS only for configured origins.

- Content-Security-Policy: everything from this origin only, no inline script or style (the
  pages keep theirs in files), 'wasm-unsafe-eval' for the face detector's WebAssembly, no
  plugins, no framing, no form submissions.
- X-Content-Type-Options, Referrer-Policy, Permissions-Policy (camera for this origin only),
  X-Frame-Options, Cross-Origin-Opener-Policy; Strict-Transport-Security when TLS is on.
- CORS: none unless AFFECTLINE_CORS_ORIGINS names origins (then Starlette's CORSMiddleware
  answers preflights and tags answers for those origins only). Same-origin pages need none.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.middleware.cors import CORSMiddleware

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",  # WebAssembly.instantiate of the face detector's runtime
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), display-capture=()"
HSTS = "max-age=31536000"
# Request headers cross-origin callers of the API may send, and answer headers they may read.
CORS_ALLOW_HEADERS = ["content-type", "authorization", "connect-protocol-version", "connect-timeout-ms",
                      "grpc-timeout", "x-grpc-web", "x-user-agent", "x-affectline-session"]
CORS_EXPOSE_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after"]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self._app = app
        headers = [
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", PERMISSIONS_POLICY.encode()),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            headers.append((b"strict-transport-security", HSTS.encode()))
        self._headers = headers

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in self._headers if k not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def parse_origins(value: str) -> list[str]:
    origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
    for o in origins:
        if o == "*" or not o.startswith(("https://", "http://")):
            raise ValueError(f"AFFECTLINE_CORS_ORIGINS: {o!r} is not an origin like https://studio.example "
                             "(wildcards are not allowed)")
    return origins


def harden(app: ASGIApp, *, tls: bool, cors_origins: str = "") -> Any:
    """`app` with security headers on every answer and CORS for the configured origins only."""
    wrapped: Any = SecurityHeaders(app, hsts=tls)
    origins = parse_origins(cors_origins)
    if origins:
        wrapped = CORSMiddleware(wrapped, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                                 allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE_HEADERS,
                                 allow_credentials=False, max_age=600)
    return wrapped

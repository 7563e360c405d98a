"""Token-bucket rate limits: requests per second per session (PushCrops, StreamCrops) and per
API key (every call that carries one), answered with RESOURCE_EXHAUSTED and a retry hint.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each request takes
one. Buckets live in memory, per server process, in a bounded LRU map: a flood of distinct keys
evicts the least recently used buckets (which then start full again) instead of growing memory.
With AFFECTLINE_REDIS_URL the per-key buckets live in Redis instead, shared by every replica
(redis_rate_limit.py). The per-session ones stay here: a session's batches all reach the one
replica that holds it (session affinity), so its bucket there is exact and costs no round trip.

The API-key limiter is keyed by the SHA-256 of the credential as sent (the `authorization`
header's bearer token, or `x-api-key`), never by the key id alone: a caller who knows a key's
public id but not its secret gets a bucket of their own and cannot drain the owner's.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from connectrpc.code import Code
from connectrpc.errors import ConnectError

RETRY_AFTER_MS_HEADER = "retry-after-ms"  # gRPC trailing metadata (native gRPC has no Retry-After)
DEFAULT_MAX_BUCKETS = 100_000
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key. Thread-safe; O(1) per call. rate <= 0 disables the limiter."""

    def __init__(self, rate: float, burst: float, *, max_buckets: int = DEFAULT_MAX_BUCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._max = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float | None:
        """Takes one token from `key`'s bucket: None when granted, else the seconds until a
        token will be there (the retry hint)."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
                self._buckets[key] = bucket
                if len(self._buckets) > self._max:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self.rate

    async def take(self, key: str) -> float | None:
        """`acquire`, as a KeyLimiter."""
        return self.acquire(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


class KeyLimiter(Protocol):
    """What the per-key interceptor and middleware take a token from: this module's RateLimiter
    (per process) or redis_rate_limit.SharedRateLimiter (across replicas)."""

    @property
    def enabled(self) -> bool: ...

    async def take(self, key: str) -> float | None:
        """None when granted, else the seconds until a token will be there."""
        ...


def retry_after_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def retry_after_header(seconds: float) -> str:
    """HTTP Retry-After: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def limited_message(what: str, seconds: float, setting: str) -> str:
    return (f"rate limit: too many requests {what} ({setting}); "
            f"re-send after retry_after_ms={retry_after_ms(seconds)}")


def rate_limited(what: str, seconds: float, setting: str, ctx: Any = None) -> ConnectError:
    """The RESOURCE_EXHAUSTED answer, with the retry hint in the message and, where the
    transport has a place for it, in a header (Connect/gRPC-web: Retry-After) or trailing
    metadata (native gRPC: retry-after-ms)."""
    add_retry_hint(ctx, seconds)
    return ConnectError(Code.RESOURCE_EXHAUSTED, limited_message(what, seconds, setting))


def add_retry_hint(ctx: Any, seconds: float) -> None:
    if ctx is None:
        return
    try:
        if hasattr(ctx, "response_headers"):  # connectrpc RequestContext
            ctx.response_headers["retry-after"] = retry_after_header(seconds)
        elif hasattr(ctx, "set_trailing_metadata"):  # grpc.aio ServicerContext
            ctx.set_trailing_metadata(((RETRY_AFTER_MS_HEADER, str(retry_after_ms(seconds))),))
    except Exception:  # a hint is best effort; the message carries it anyway
        pass


def credential_key(headers: Iterable[tuple[str, str]]) -> str | None:
    """The API-key limiter's key for a call's headers/metadata (names lower-case): SHA-256 of
    the bearer token of `authorization`, or of `x-api-key`; None when the call carries neither."""
    for name, value in headers:
        if name == "authorization":
            m = _BEARER.fullmatch(value or "")
            token = m.group(1) if m else value
        elif name == "x-api-key":
            token = value
        else:
            continue
        if token:
            return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    return None


KEY_SETTING = "AFFECTLINE_RATE_LIMIT_KEY_RPS"
SESSION_SETTING = "AFFECTLINE_RATE_LIMIT_SESSION_RPS"


# ------------------------------------------------------------------ native gRPC


def grpc_key_interceptor(limiter: KeyLimiter) -> Any:
    """A grpc.aio server interceptor taking one token per call that carries an API key."""
    import grpc

    class KeyRateLimit(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or not limiter.enabled:
                return handler
            key = credential_key((k.lower(), v if isinstance(v, str) else "") for k, v in details.invocation_metadata or ())
            wait = None if key is None else await limiter.take(key)
            if wait is None:
                return handler
            message = limited_message("with this API key", wait, KEY_SETTING)
            trailer = ((RETRY_AFTER_MS_HEADER, str(retry_after_ms(wait))),)

            async def refuse(context: Any) -> None:
                context.set_trailing_metadata(trailer)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

            async def unary(request: Any, context: Any) -> Any:
                await refuse(context)

            async def streaming(request: Any, context: Any) -> Any:
                await refuse(context)
                yield  # pragma: no cover  (never reached: abort raises)

            kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
            if handler.request_streaming and handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(streaming, **kw)
            if handler.request_streaming:
                return grpc.stream_unary_rpc_method_handler(unary, **kw)
            if handler.response_streaming:
                return grpc.unary_stream_rpc_method_handler(streaming, **kw)
            return grpc.unary_unary_rpc_method_handler(unary, **kw)

    return KeyRateLimit()


# ------------------------------------------------------------------ HTTP (ASGI)


class KeyRateLimitMiddleware:
    """Takes one token per HTTP request that carries an API key (a JSON-RPC batch counts once)
    and refuses with the transport's own RESOURCE_EXHAUSTED plus `Retry-After`: gRPC-web and
    gRPC a trailers-only answer (grpc-status 8), Connect HTTP 429 with its JSON error (an
    end-of-stream error for Connect streams), everything else (JSON-RPC, pages) HTTP 429 with
    a JSON-RPC error body."""

    def __init__(self, app: Any, limiter: KeyLimiter) -> None:
        self._app = app
        self._limiter = limiter

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self._limiter.enabled:
            await self._app(scope, receive, send)
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", ())]
        key = credential_key(headers)
        wait = None if key is None else await self._limiter.take(key)
        if wait is None:
            await self._app(scope, receive, send)
            return
        content_type = next((v for k, v in headers if k == "content-type"), "").split(";")[0].strip().lower()
        await _refuse_http(send, scope.get("path", ""), content_type, wait)


async def _refuse_http(send: Callable, path: str, content_type: str, wait: float) -> None:
    import json
    from urllib.parse import quote

    message = limited_message("with this API key", wait, KEY_SETTING)
    retry = [(b"retry-after", retry_after_header(wait).encode())]
    if content_type.startswith(("application/grpc-web", "application/grpc")):
        status, body = 200, b""
        headers = [(b"content-type", content_type.encode()), (b"grpc-status", b"8"),
                   (b"grpc-message", quote(message, safe=" :;,=()_-.'").encode()), *retry]
    elif content_type.startswith("application/connect+"):
        error = json.dumps({"error": {"code": "resource_exhausted", "message": message}}).encode()
        status, body = 200, bytes([2]) + len(error).to_bytes(4, "big") + error
        headers = [(b"content-type", content_type.encode()), *retry]
    elif path == "/jsonrpc":
        payload = {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32008, "message": message, "data": {"grpc_status": "RESOURCE_EXHAUSTED", "grpc_code": 8}}}
        status, body = 429, json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), *retry]
    elif content_type in ("application/proto", "application/json"):  # Connect unary
        status, body = 429, json.dumps({"code": "resource_exhausted", "message": message}).encode()
        headers = [(b"content-type", b"application/json"), *retry]
    else:
        status, body = 429, (message + "\n").encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *retry]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

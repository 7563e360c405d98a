"""JSON-RPC 2.0 over HTTP: `POST /jsonrpc`, method = "affectline.v1.<Service>/<Method>",
params = the request message in proto3 JSON. Batch calls are supported; the request's
Authorization header (an API key) is checked for each call of a batch, by its method.

gRPC statuses map to JSON-RPC error codes (the status itself is in `error.data`):
INVALID_ARGUMENT -> -32602 (invalid params), UNIMPLEMENTED -> -32601 (method not found),
INTERNAL/UNKNOWN -> -32603, any other status s -> -32000 - s (e.g. NOT_FOUND (5) -> -32005).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from affectline.auth.authenticator import Authorize
from affectline.serving.rpc_methods import RpcMethod, ServiceBinding, grpc_status

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_BATCH = 100
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Results bigger than this (serialized protobuf bytes) are converted to JSON in a worker
# thread, off the event loop (e.g. a 10,000-frame timeline page).
LARGE_RESULT_BYTES = 64 * 1024


def jsonrpc_code(code: Code) -> int:
    if code is Code.INVALID_ARGUMENT:
        return INVALID_PARAMS
    if code is Code.UNIMPLEMENTED:
        return METHOD_NOT_FOUND
    if code in (Code.INTERNAL, Code.UNKNOWN):
        return INTERNAL_ERROR
    return -32000 - grpc_status(code).value[0]


def _error(id_: Any, code: int, message: str, status: Code | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if status is not None:
        error["data"] = {"grpc_status": grpc_status(status).name, "grpc_code": grpc_status(status).value[0]}
    return {"jsonrpc": "2.0", "id": id_, "error": error}


def _not_json(name: str) -> Any:
    """NaN and Infinity: Python's json accepts them, JSON does not (nor can they be answered)."""
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


class _Reply(JSONResponse):
    """ASCII-escaped JSON: a request's string (an echoed id) may hold a lone surrogate ("\\udd8b" is
    valid JSON), which UTF-8 cannot encode: that was a 500 (found by scripts/fuzz_campaign.py)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, read chunk by chunk; BodyTooLarge as soon as it passes max_bytes
    (at once when Content-Length says so), so an oversized body is never buffered."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class JsonRpcEndpoint:
    def __init__(self, bindings: list[tuple[ServiceBinding, Any]], *, authorize: Authorize,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        """bindings: (service binding, the object whose methods are called: usually instrumented);
        authorize: the API key check (auth/authenticator.py)."""
        self._authorize = authorize
        self._max_body_bytes = max_body_bytes
        self._methods: dict[str, tuple[RpcMethod, Any]] = {}
        for binding, impl in bindings:
            for m in binding.methods():
                self._methods[f"{m.service}/{m.name}"] = (m, impl)

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_body(request, self._max_body_bytes)
        except ClientDisconnect:  # gone mid-body (e.g. closed by the read timeout): nobody to answer
            return Response(status_code=400)
        except BodyTooLarge:
            code = Code.RESOURCE_EXHAUSTED
            message = f"request body larger than {self._max_body_bytes} bytes (AFFECTLINE_MAX_REQUEST_BYTES)"
            return _Reply(_error(None, jsonrpc_code(code), message, code), status_code=413)
        authorization = request.headers.get("authorization")
        try:
            payload = json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, NaN, 1e400, nesting too deep
            return _Reply(_error(None, PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return _Reply(_error(None, INVALID_REQUEST, "empty batch"))
            if len(payload) > MAX_BATCH:
                return _Reply(_error(None, INVALID_REQUEST, f"batch of {len(payload)} calls; at most {MAX_BATCH}"))
            results = await asyncio.gather(*(self._call(item, authorization) for item in payload))
            replies = [r for r in results if r is not None]
            return _Reply(replies) if replies else Response(status_code=204)
        reply = await self._call(payload, authorization)
        return _Reply(reply) if reply is not None else Response(status_code=204)

    async def _call(self, item: Any, authorization: str | None) -> dict[str, Any] | None:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0" or not isinstance(item.get("method"), str):
            return _error(item.get("id") if isinstance(item, dict) else None, INVALID_REQUEST,
                          'invalid request: need {"jsonrpc": "2.0", "method": "...", "params": {...}, "id": ...}')
        is_notification = "id" not in item
        id_ = item.get("id")
        reply = await self._dispatch(id_, item["method"], item.get("params", {}), authorization)
        return None if is_notification else reply

    async def _dispatch(self, id_: Any, name: str, params: Any, authorization: str | None) -> dict[str, Any]:
        found = self._methods.get(name.lstrip("/"))
        if found is None:
            return _error(id_, METHOD_NOT_FOUND, f"method not found: {name!r}; known: {sorted(self._methods)}")
        method, impl = found
        try:
            await self._authorize(method.service, authorization)
        except ConnectError as exc:
            return _error(id_, jsonrpc_code(exc.code), exc.message, exc.code)
        if method.client_streaming or method.server_streaming:
            return _error(id_, METHOD_NOT_FOUND, f"{name} is a streaming method: use gRPC, gRPC-web or Connect")
        if not isinstance(params, dict):
            return _error(id_, INVALID_PARAMS, "params must be an object (the request message in proto3 JSON)")
        try:
            message = json_format.ParseDict(params, method.input())
        except json_format.ParseError as exc:
            return _error(id_, INVALID_PARAMS, f"params are not a valid {method.input.DESCRIPTOR.full_name}: {exc}",
                          Code.INVALID_ARGUMENT)
        try:
            response = await getattr(impl, method.attr)(message, None)
        except ConnectError as exc:
            return _error(id_, jsonrpc_code(exc.code), exc.message, exc.code)
        except Exception:  # never leak internals; log them
            log.exception("JSON-RPC %s failed", name)
            return _error(id_, INTERNAL_ERROR, "internal error", Code.INTERNAL)
        if response.ByteSize() > LARGE_RESULT_BYTES:
            result = await asyncio.to_thread(json_format.MessageToDict, response)
        else:
            result = json_format.MessageToDict(response)
        return {"jsonrpc": "2.0", "id": id_, "result": result}

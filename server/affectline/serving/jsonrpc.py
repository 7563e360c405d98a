"""JSON-RPC 2.0 over HTTP: `POST /jsonrpc`, method = "affectline.v1.<Service>/<Method>",
params = the request message in proto3 JSON. Batch calls are supported.

gRPC statuses map to JSON-RPC error codes (the status itself is in `error.data`):
INVALID_ARGUMENT -> -32602 (invalid params), UNIMPLEMENTED -> -32601 (method not found),
INTERNAL/UNKNOWN -> -32603, any other status s -> -32000 - s (e.g. NOT_FOUND (5) -> -32005).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

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
    def __init__(self, bindings: list[tuple[ServiceBinding, Any]], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        """bindings: (service binding, the object whose methods are called: usually instrumented)."""
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
            return JSONResponse(_error(None, jsonrpc_code(code), message, code), status_code=413)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse(_error(None, PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return JSONResponse(_error(None, INVALID_REQUEST, "empty batch"))
            if len(payload) > MAX_BATCH:
                return JSONResponse(_error(None, INVALID_REQUEST, f"batch of {len(payload)} calls; at most {MAX_BATCH}"))
            results = await asyncio.gather(*(self._call(item) for item in payload))
            replies = [r for r in results if r is not None]
            return JSONResponse(replies) if replies else Response(status_code=204)
        reply = await self._call(payload)
        return JSONResponse(reply) if reply is not None else Response(status_code=204)

    async def _call(self, item: Any) -> dict[str, Any] | None:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0" or not isinstance(item.get("method"), str):
            return _error(item.get("id") if isinstance(item, dict) else None, INVALID_REQUEST,
                          'invalid request: need {"jsonrpc": "2.0", "method": "...", "params": {...}, "id": ...}')
        is_notification = "id" not in item
        id_ = item.get("id")
        reply = await self._dispatch(id_, item["method"], item.get("params", {}))
        return None if is_notification else reply

    async def _dispatch(self, id_: Any, name: str, params: Any) -> dict[str, Any]:
        found = self._methods.get(name.lstrip("/"))
        if found is None:
            return _error(id_, METHOD_NOT_FOUND, f"method not found: {name!r}; known: {sorted(self._methods)}")
        method, impl = found
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

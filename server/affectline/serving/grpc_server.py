"""The native gRPC server (grpc.aio): our services, health checking and reflection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Sequence

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from affectline.auth.authenticator import Authorize
from affectline.metrics import Metrics
from affectline.serving.instrumented import InstrumentedService
from affectline.serving.rpc_methods import RpcMethod, ServiceBinding, grpc_status

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)


def _parse(method: RpcMethod, raw: bytes) -> Any:
    # We deserialise ourselves so a malformed message gets INVALID_ARGUMENT, not INTERNAL.
    try:
        return method.input.FromString(raw)
    except DecodeError as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, f"malformed {method.input.DESCRIPTOR.full_name}: {exc}") from exc


async def _abort_internal(method: RpcMethod, context: grpc.aio.ServicerContext) -> None:
    # grpc would send "Unexpected <type>: <message>", which can carry SQL or paths: log it, send nothing.
    log.exception("gRPC %s failed", method.path)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


async def _relay(method: RpcMethod, responses: Callable[[], AsyncIterator[Any]],
                 context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    """Yields a streaming method's responses, turning its errors into gRPC statuses."""
    try:
        async for response in responses():
            yield response
    except ConnectError as exc:
        await context.abort(grpc_status(exc.code), exc.message)
    except Exception:
        await _abort_internal(method, context)


def _handler(method: RpcMethod, impl: Any) -> grpc.RpcMethodHandler:
    target = getattr(impl, method.attr)
    serialize = method.output.SerializeToString

    if method.server_streaming and not method.client_streaming:

        # Handlers must be async generator functions: grpc.aio picks its calling mode by that.
        async def server_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in _relay(method, lambda: target(_parse(method, raw), context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(server_stream, response_serializer=serialize)

    if method.server_streaming:

        async def stream(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async def requests() -> AsyncIterator[Any]:
                async for raw in request_iterator:
                    yield _parse(method, raw)

            async for response in _relay(method, lambda: target(requests(), context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream, response_serializer=serialize)

    async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await target(_parse(method, raw), context)
        except ConnectError as exc:
            await context.abort(grpc_status(exc.code), exc.message)
        except Exception:
            await _abort_internal(method, context)

    return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serialize)


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that only answers code/message."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler.request_streaming:
        make = grpc.stream_stream_rpc_method_handler if handler.response_streaming else grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
    return make(refuse)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Checks the `authorization` metadata of every call, to any service on the server, before
    its handler runs (scopes.required_scope decides which calls need a key)."""

    def __init__(self, authorize: Authorize) -> None:
        self._authorize = authorize

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return handler
        service = details.method.lstrip("/").partition("/")[0]
        authorization = next((v for k, v in details.invocation_metadata or () if k == "authorization"), None)
        try:
            await self._authorize(service, authorization if isinstance(authorization, str) else None)
        except ConnectError as exc:
            return _refusal(handler, grpc_status(exc.code), exc.message)
        return handler


@dataclass(frozen=True)
class GrpcServer:
    server: grpc.aio.Server
    port: int  # the bound port (useful when asked for port 0)
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def start(self) -> None:
        await self.server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


def build_grpc_server(bindings: list[ServiceBinding], metrics: Metrics, address: str, *, authorize: Authorize,
                      max_receive_bytes: int = MAX_MESSAGE_BYTES, credentials: grpc.ServerCredentials | None = None,
                      interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> GrpcServer:
    """Builds (does not start) the server with our services, health and reflection. gRPC
    itself refuses a request message over max_receive_bytes with RESOURCE_EXHAUSTED, unparsed.
    authorize checks each call's API key (auth/authenticator.py). credentials: TLS/mTLS
    (tls.py), None for plaintext; interceptors (the per-API-key rate limit) run before the key check."""
    server = grpc.aio.server(
        interceptors=[*interceptors, ApiKeyInterceptor(authorize)],
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    for binding in bindings:
        impl = InstrumentedService(binding, metrics, transport="grpc")
        handlers = {m.name: _handler(m, impl) for m in binding.methods()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(binding.name, handlers),))

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.name for b in bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    try:
        port = server.add_secure_port(address, credentials) if credentials is not None else server.add_insecure_port(address)
    except RuntimeError:  # grpc raises "Failed to bind to address" (e.g. the port is in use)
        port = 0
    if port == 0:
        raise OSError(f"could not bind the gRPC server to {address} (in use, or not an address of this host)")
    return GrpcServer(server, port, health_servicer, tuple(b.name for b in bindings))

"""Native-gRPC users: a viewer pushing unary PushCrops batches, and a partner on a bidi StreamCrops.

grpc runs on gevent (grpc.experimental.gevent.init_gevent() in the locustfile, before any channel),
and every unary RPC fires a Locust request event from a client interceptor, as in Locust's
documented gRPC example. Stream messages fire one event per acknowledged batch. Every call after
StartSession carries the session id as `x-affectline-session` metadata, as partner_client does, so
a proxy hashing on it (deploy/haproxy/haproxy.cfg) keeps each session on one replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from affectline.partner_client import SESSION_HEADER
from affectline.v1 import session_pb2, session_pb2_grpc
from gevent.queue import Queue
from locust import User, task
from locust.env import Environment
from viewer import ViewerFlow

PUSH = "/affectline.v1.SessionService/PushCrops"
STREAM = "/affectline.v1.SessionService/StreamCrops"


def affinity(session_id: str) -> tuple[tuple[str, str], ...]:
    """The metadata a session-affine proxy hashes on."""
    return ((SESSION_HEADER, session_id),)


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Times every unary call and reports it to Locust (request_type "grpc", name = method path)."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        started = time.perf_counter()
        exception: BaseException | None = None
        length = 0
        response = continuation(details, request)
        try:
            length = response.result().ByteSize()
        except grpc.RpcError as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.env.events.request.fire(request_type="grpc", name=details.method.rsplit("/", 1)[-1],
                                     response_time=elapsed_ms, response_length=length, response=response,
                                     context=None, exception=exception)
        return response


class GrpcViewerUser(ViewerFlow, User):
    """A viewer's browser-like flow over native gRPC, batches as unary PushCrops."""

    weight = 5

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.setup_viewer(environment.parsed_options)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(environment.parsed_options.grpc_target),
                                              LocustInterceptor(environment))
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    @task
    def _task(self) -> None:
        self.viewer_step()

    def on_stop(self) -> None:
        self.stop_viewer()
        self.channel.close()

    def call_start(self, request: session_pb2.StartSessionRequest) -> session_pb2.StartSessionResponse | None:
        try:
            return self.stub.StartSession(request)
        except grpc.RpcError:
            return None  # already reported by the interceptor

    def call_push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse | None:
        try:
            return self.stub.PushCrops(request, metadata=affinity(request.session_id))
        except grpc.RpcError:
            return None

    def call_end(self, request: session_pb2.EndSessionRequest) -> bool:
        try:
            self.stub.EndSession(request, metadata=affinity(request.session_id))
            return True
        except grpc.RpcError:
            return False


class GrpcStreamPartnerUser(GrpcViewerUser):
    """A native partner: same session flow, but batches go over one bidi StreamCrops call, in
    lock-step (send a batch, wait for its ack), one Locust event per acknowledged batch."""

    weight = 2

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.outbox: Queue[session_pb2.PushCropsRequest | None] = Queue()
        self.acks: Iterator[session_pb2.PushCropsResponse] | None = None

    def _requests(self, outbox: Queue) -> Iterator[session_pb2.PushCropsRequest]:
        while (item := outbox.get()) is not None:
            yield item

    def close_stream(self) -> None:
        if self.acks is not None:
            self.outbox.put(None)
            self.acks = None
            self.outbox = Queue()

    def end_session(self) -> None:
        self.close_stream()
        super().end_session()

    def call_push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse | None:
        if self.acks is None:
            self.acks = self.stub.StreamCrops(self._requests(self.outbox), metadata=affinity(request.session_id))
        started = time.perf_counter()
        exception: BaseException | None = None
        ack = None
        try:
            self.outbox.put(request)
            ack = next(self.acks)
        except (grpc.RpcError, StopIteration) as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="grpc-stream", name="StreamCrops", response_time=elapsed_ms,
            response_length=ack.ByteSize() if ack else 0, response=ack, context=None, exception=exception)
        if ack is None:  # the stream is broken: the next session opens a new one
            self.acks = None
            self.outbox = Queue()
        return ack

"""Native-gRPC users: a viewer pushing unary PushCrops batches, and a partner on a bidi StreamCrops.

grpc runs on gevent (grpc.experimental.gevent.init_gevent() in the locustfile, before any channel),
and every unary RPC fires a Locust request event from a client interceptor, as in Locust's
documented gRPC example. Stream messages fire one event per acknowledged batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import tally
from affectline.partner_client import ClientSession, start_request
from affectline.v1 import session_pb2, session_pb2_grpc
from cryptography.hazmat.primitives.asymmetric import ec
from gevent.queue import Queue
from locust import User, task
from locust.env import Environment
from viewer import Playback, SendClock, before_end, hint, shielded

PUSH = "/affectline.v1.SessionService/PushCrops"
STREAM = "/affectline.v1.SessionService/StreamCrops"


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


class GrpcViewerUser(User):
    """A viewer's browser-like flow over native gRPC: StartSession (ECDH), a 30 fps stream of
    encrypted batches as unary PushCrops, EndSession when the video ends, then the next video."""

    weight = 5

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        o = environment.parsed_options
        self.playback = Playback(o.fps, o.frames_per_batch, o.video_seconds, o.video_id)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(o.grpc_target), LocustInterceptor(environment))
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)
        self.session: ClientSession | None = None
        self.clock = SendClock(self.playback.frames_per_batch / self.playback.fps)
        self.paced_start = False  # the server named a slot for the first batch of this session

    def wait_time(self) -> float:  # one batch per frames_per_batch / fps seconds, in the server's slot
        return self.clock.wait()

    def start_session(self) -> ClientSession | None:
        self.playback.restart()
        key = ec.generate_private_key(ec.SECP256R1())
        request = start_request(key, video_id=self.playback.video_id, viewer_id=self.playback.viewer_id,
                                capture_fps=self.playback.fps, frames_per_batch=self.playback.frames_per_batch)
        try:
            response = self.stub.StartSession(request)
        except grpc.RpcError:
            return None  # already reported by the interceptor; retried next task
        tally.COUNTS["sessions_started"] += 1
        tally.RECENT_SESSIONS.append(response.session_id)
        self.playback.crop_size = response.crop_spec.width or self.playback.crop_size
        self.paced_start = self.clock.started(hint(response, "first_batch_in_ms"))
        return ClientSession.open(key, response)

    def end_session(self) -> None:
        if self.session is not None:
            try:
                self.stub.EndSession(self.session.end_request())
                tally.COUNTS["sessions_ended"] += 1
            except grpc.RpcError:
                pass
            self.session = None

    def on_stop(self) -> None:
        if self.session is not None:
            before_end(self.playback)
        self.end_session()
        self.channel.close()

    @task
    def _task(self) -> None:
        if self.session is None:
            self.session = self.start_session()
            if self.session is None or self.paced_start:
                return  # the first batch goes out in the server's slot, after wait_time
        session = self.session
        shielded(lambda: self.push(session, self.playback))
        if self.playback.finished:
            self.end_session()

    def push(self, session: ClientSession, playback: Playback) -> None:
        frames = playback.next_frames()
        self.clock.sending()
        try:
            ack = self.stub.PushCrops(session.push_request(frames, achieved_fps=playback.fps))
        except grpc.RpcError:
            self.session = None  # a failed batch leaves a seq gap; start over with a new session
            return
        self.clock.acked(hint(ack, "next_batch_in_ms"))
        count_ack(ack)


def count_ack(ack: session_pb2.PushCropsResponse) -> None:
    if ack.duplicate:
        tally.COUNTS["duplicate_acks"] += 1
    else:
        tally.COUNTS["frames_acked"] += len(ack.results)
        tally.COUNTS["batches_acked"] += 1


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

    def push(self, session: ClientSession, playback: Playback) -> None:
        if self.acks is None:
            self.acks = self.stub.StreamCrops(self._requests(self.outbox))
        frames = playback.next_frames()
        request = session.push_request(frames, achieved_fps=playback.fps)
        self.clock.sending()
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
        if ack is None:
            self.acks = None
            self.outbox = Queue()
            self.session = None
            return
        self.clock.acked(hint(ack, "next_batch_in_ms"))
        count_ack(ack)

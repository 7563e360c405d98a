"""HTTP users, as a browser speaks: a viewer over gRPC-web and an analyst over Connect JSON.

gRPC-web is framed by hand on geventhttpclient (Locust's own gevent HTTP client): connectrpc's
sync client runs on pyqwest, a Rust HTTP client whose blocking calls gevent cannot switch away
from, so one call would stall every other user in the process.
"""

from __future__ import annotations

import json
import random
import struct
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
import tally
from affectline.partner_client import ClientSession, start_request
from affectline.v1 import session_pb2
from cryptography.hazmat.primitives.asymmetric import ec
from geventhttpclient import HTTPClient
from locust import User, between, task
from locust.env import Environment
from viewer import Playback, SendClock, before_end, hint, shielded

GRPC_WEB_HEADERS = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "accept": "application/grpc-web+proto"}
TRAILER_FLAG = 0x80


class RpcFailed(Exception):
    pass


def grpc_web_frame(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def parse_grpc_web(body: bytes, headers: Any) -> bytes:
    """The response message of a unary gRPC-web call; raises RpcFailed on a non-OK status."""
    message, trailers, i = b"", {}, 0
    while i + 5 <= len(body):
        flag, length = struct.unpack(">BI", body[i:i + 5])
        chunk = body[i + 5:i + 5 + length]
        i += 5 + length
        if flag & TRAILER_FLAG:
            for line in chunk.decode().split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            message = chunk
    status = trailers.get("grpc-status") or headers.get("grpc-status")  # trailers-only answers use headers
    if status != "0":
        raise RpcFailed(f"grpc-status {status}: {trailers.get('grpc-message') or headers.get('grpc-message')}")
    return message


class HttpRpcUser(User):
    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        url = urlsplit(self.host or environment.host or "http://127.0.0.1:8080")
        self.http = HTTPClient(url.hostname or "127.0.0.1", url.port or 80, concurrency=1, network_timeout=30)

    def call(self, request_type: str, name: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, float]:
        """POSTs one RPC and fires its Locust event; returns (response message, latency ms)."""
        started = time.perf_counter()
        exception: Exception | None = None
        message = b""
        try:
            response = self.http.post(path, body=body, headers=headers)
            raw = response.read()
            if response.status_code != 200:
                raise RpcFailed(f"HTTP {response.status_code}: {raw[:200]!r}")
            message = parse_grpc_web(raw, response) if request_type == "grpc-web" else raw
        except (RpcFailed, OSError, gevent.Timeout) as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(request_type=request_type, name=name, response_time=elapsed_ms,
                                             response_length=len(message), response=None, context=None,
                                             exception=exception)
        if exception is not None:
            raise exception
        return message, elapsed_ms

    def on_stop(self) -> None:
        self.http.close()


class GrpcWebViewerUser(HttpRpcUser):
    """The browser's flow over gRPC-web (binary protobuf, unary calls only, as fetch allows)."""

    weight = 3

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        o = environment.parsed_options
        self.playback = Playback(o.fps, o.frames_per_batch, o.video_seconds, o.video_id)
        self.session: ClientSession | None = None
        self.clock = SendClock(self.playback.frames_per_batch / self.playback.fps)

    def wait_time(self) -> float:  # one batch per frames_per_batch / fps seconds, in the server's slot
        return self.clock.wait()

    def rpc(self, method: str, request: Any, response_type: type) -> Any:
        body, _ = self.call("grpc-web", f"grpc-web {method}", f"/affectline.v1.SessionService/{method}",
                                  grpc_web_frame(request.SerializeToString()), GRPC_WEB_HEADERS)
        return response_type.FromString(body)

    @task
    def _task(self) -> None:
        if self.session is None:
            self.playback.restart()
            key = ec.generate_private_key(ec.SECP256R1())
            try:
                started = self.rpc("StartSession", start_request(key, video_id=self.playback.video_id,
                                   viewer_id=self.playback.viewer_id, capture_fps=self.playback.fps,
                                   frames_per_batch=self.playback.frames_per_batch),
                                   session_pb2.StartSessionResponse)
            except (RpcFailed, OSError, gevent.Timeout):
                return
            tally.COUNTS["sessions_started"] += 1
            tally.RECENT_SESSIONS.append(started.session_id)
            self.playback.crop_size = started.crop_spec.width or self.playback.crop_size
            self.session = ClientSession.open(key, started)
            if self.clock.started(hint(started, "first_batch_in_ms")):
                return  # the first batch goes out in the server's slot, after wait_time
        shielded(self._push)

    def _push(self) -> None:
        assert self.session is not None
        frames = self.playback.next_frames()
        self.clock.sending()
        try:
            ack = self.rpc("PushCrops", self.session.push_request(frames, self.playback.fps), session_pb2.PushCropsResponse)
        except (RpcFailed, OSError, gevent.Timeout):
            self.session = None
            return
        self.clock.acked(hint(ack, "next_batch_in_ms"))
        if ack.duplicate:
            tally.COUNTS["duplicate_acks"] += 1
        else:
            tally.COUNTS["frames_acked"] += len(ack.results)
            tally.COUNTS["batches_acked"] += 1
        if self.playback.finished:
            self.end_session()

    def end_session(self) -> None:
        if self.session is not None:
            try:
                self.rpc("EndSession", self.session.end_request(), session_pb2.EndSessionResponse)
                tally.COUNTS["sessions_ended"] += 1
            except (RpcFailed, OSError, gevent.Timeout):
                pass
            self.session = None

    def on_stop(self) -> None:
        if self.session is not None:
            before_end(self.playback)
        self.end_session()
        super().on_stop()


class AnalystUser(HttpRpcUser):
    """An analyst's dashboard over Connect JSON: refreshes a video's per-second curve and opens a
    recent session's timeline every few seconds."""

    weight = 1
    wait_time = between(2, 5)
    HEADERS: ClassVar[dict[str, str]] = {"content-type": "application/json"}

    @task(2)
    def _video_timeline(self) -> None:
        body = json.dumps({"videoId": self.environment.parsed_options.video_id, "bucketMs": 1000}).encode()
        try:
            self.call("connect-json", "GetVideoTimeline", "/affectline.v1.AnalyticsService/GetVideoTimeline", body, self.HEADERS)
        except (RpcFailed, OSError, gevent.Timeout):
            pass

    @task(1)
    def _session_timeline(self) -> None:
        if not tally.RECENT_SESSIONS:
            return
        body = json.dumps({"sessionId": random.choice(tally.RECENT_SESSIONS)}).encode()
        try:
            self.call("connect-json", "GetSessionTimeline", "/affectline.v1.AnalyticsService/GetSessionTimeline", body, self.HEADERS)
        except (RpcFailed, OSError, gevent.Timeout):
            pass

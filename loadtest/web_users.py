"""HTTP users, as a browser speaks: a viewer over gRPC-web and an analyst over Connect JSON.

gRPC-web is framed by hand on geventhttpclient (Locust's own gevent HTTP client): connectrpc's
sync client runs on pyqwest, a Rust HTTP client whose blocking calls gevent cannot switch away
from, so one call would stall every other user in the process.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
import tally
from affectline.partner_client import SESSION_HEADER
from affectline.v1 import session_pb2
from geventhttpclient import HTTPClient
from locust import User, between, task
from locust.env import Environment
from viewer import ViewerFlow

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


class GrpcWebViewerUser(ViewerFlow, HttpRpcUser):
    """The browser's flow over gRPC-web (binary protobuf, unary calls only, as fetch allows)."""

    weight = 3

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.setup_viewer(environment.parsed_options)

    @task
    def _task(self) -> None:
        self.viewer_step()

    def on_stop(self) -> None:
        self.stop_viewer()
        super().on_stop()

    def rpc(self, method: str, request: Any, response_type: type, session_id: str = "") -> Any:
        """One unary call; None when it failed (the Locust event already says why). Calls of a started
        session carry its id in `x-affectline-session`, as the browser's do (a proxy hashes on it)."""
        headers = {**GRPC_WEB_HEADERS, SESSION_HEADER: session_id} if session_id else GRPC_WEB_HEADERS
        try:
            body, _ = self.call("grpc-web", f"grpc-web {method}", f"/affectline.v1.SessionService/{method}",
                                grpc_web_frame(request.SerializeToString()), headers)
        except (RpcFailed, OSError, gevent.Timeout):
            return None
        return response_type.FromString(body)

    def call_start(self, request: session_pb2.StartSessionRequest) -> session_pb2.StartSessionResponse | None:
        return self.rpc("StartSession", request, session_pb2.StartSessionResponse)

    def call_push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse | None:
        return self.rpc("PushCrops", request, session_pb2.PushCropsResponse, request.session_id)

    def call_end(self, request: session_pb2.EndSessionRequest) -> bool:
        return self.rpc("EndSession", request, session_pb2.EndSessionResponse, request.session_id) is not None


class AnalystUser(HttpRpcUser):
    """An analyst's dashboard over Connect JSON: refreshes a video's per-second curve and opens a
    recent session's timeline every few seconds."""

    weight = 1
    wait_time = between(2, 5)
    HEADERS: ClassVar[dict[str, str]] = {"content-type": "application/json"}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        # AnalyticsService needs an analytics:read key; `affectline loadtest` makes one and passes it here.
        key = os.environ.get("AFFECTLINE_API_KEY", "")
        self.headers = {**self.HEADERS, **({"authorization": f"Bearer {key}"} if key else {})}

    @task(2)
    def _video_timeline(self) -> None:
        if not tally.RECENT_SESSIONS:
            return  # the video has no session yet (NOT_FOUND): its dashboard opens once viewers started
        body = json.dumps({"videoId": self.environment.parsed_options.video_id, "bucketMs": 1000}).encode()
        try:
            self.call("connect-json", "GetVideoTimeline", "/affectline.v1.AnalyticsService/GetVideoTimeline", body, self.headers)
        except (RpcFailed, OSError, gevent.Timeout):
            pass

    @task(1)
    def _session_timeline(self) -> None:
        if not tally.RECENT_SESSIONS:
            return
        body = json.dumps({"sessionId": random.choice(tally.RECENT_SESSIONS)}).encode()
        try:
            self.call("connect-json", "GetSessionTimeline", "/affectline.v1.AnalyticsService/GetSessionTimeline", body, self.headers)
        except (RpcFailed, OSError, gevent.Timeout):
            pass

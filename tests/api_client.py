"""Small helpers for tests that talk to a running server as a partner would."""

from __future__ import annotations

from typing import Sequence

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline.partner_client import ClientSession, Frame, start_request
from affectline.v1 import analytics_pb2_grpc, session_pb2_grpc


def bearer(api_key: str) -> dict[str, str]:
    """The HTTP header that carries an API key (gRPC-web, Connect, JSON-RPC)."""
    return {"authorization": f"Bearer {api_key}"}


class BearerAuth(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <key>` metadata to every call made on a channel."""

    def __init__(self, api_key: str) -> None:
        self._metadata = tuple(bearer(api_key).items())

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))  # type: ignore[attr-defined]

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(details), request)


class GrpcPartner:
    """A native-gRPC partner: one channel, both service stubs. With api_key, the analytics
    stub sends it; viewers' calls (sessions) never need one."""

    def __init__(self, target: str, api_key: str | None = None) -> None:
        self.channel = grpc.insecure_channel(target)
        self.sessions = session_pb2_grpc.SessionServiceStub(self.channel)
        keyed = grpc.intercept_channel(self.channel, BearerAuth(api_key)) if api_key else self.channel
        self.analytics = analytics_pb2_grpc.AnalyticsServiceStub(keyed)

    def start(self, video_id: str = "trailer-1", viewer_id: str = "viewer-1", **kw) -> ClientSession:
        key = ec.generate_private_key(ec.SECP256R1())
        response = self.sessions.StartSession(start_request(key, video_id=video_id, viewer_id=viewer_id, **kw))
        return ClientSession.open(key, response)

    def close(self) -> None:
        self.channel.close()


def frames_of(crops: Sequence[np.ndarray | None], start_ms: int = 0, step_ms: int = 33) -> list[Frame]:
    return [Frame(video_time_ms=start_ms + i * step_ms, crop=c) for i, c in enumerate(crops)]


def cycle(faces: np.ndarray, n: int) -> list[np.ndarray]:
    return [faces[i % len(faces)] for i in range(n)]

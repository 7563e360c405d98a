"""Small helpers for tests that talk to a running server as a partner would."""

from __future__ import annotations

from typing import Sequence

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline.partner_client import ClientSession, Frame, start_request
from affectline.v1 import analytics_pb2_grpc, session_pb2_grpc


class GrpcPartner:
    """A native-gRPC partner: one channel, both service stubs."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.sessions = session_pb2_grpc.SessionServiceStub(self.channel)
        self.analytics = analytics_pb2_grpc.AnalyticsServiceStub(self.channel)

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

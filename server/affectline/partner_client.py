"""Client side of a session, for partner systems, tests, load tests and the benchmark.

Transport-agnostic: it builds the request messages (key exchange, encrypted batches);
the caller sends them with whatever stub it uses (grpcio, Connect, JSON-RPC).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline import crypto
from affectline.v1 import session_pb2


@dataclass(frozen=True, slots=True)
class Frame:
    video_time_ms: int
    crop: np.ndarray | None  # uint8 [H,W]; None when no face was found
    head_yaw_deg: float | None = None


def start_request(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    video_id: str,
    viewer_id: str,
    variant_id: str = "",
    scopes: Sequence[str] = ("emotion", "attention"),
    notice_version: str = "2026-11-01",
    capture_fps: float = 30.0,
    frames_per_batch: int = 0,
    age_band: str = "",
    gender: str = "",
    region: str = "",
) -> session_pb2.StartSessionRequest:
    request = session_pb2.StartSessionRequest(
        video_id=video_id,
        variant_id=variant_id,
        client_public_key=crypto.public_key_bytes(private_key.public_key()),
        capture_fps=capture_fps,
        frames_per_batch=frames_per_batch,
    )
    request.viewer.viewer_id = viewer_id
    request.viewer.consent.notice_version = notice_version
    request.viewer.consent.consented_at.FromDatetime(datetime.now(timezone.utc))
    request.viewer.consent.scopes.extend(scopes)
    request.viewer.demographics.age_band = age_band
    request.viewer.demographics.gender = gender
    request.viewer.demographics.region = region
    return request


@dataclass
class ClientSession:
    """A started session: derives the key from the server's answer and encrypts batches."""

    session_id: str
    token: str
    key: bytes
    crop_spec: session_pb2.CropSpec
    _seq: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def open(cls, private_key: ec.EllipticCurvePrivateKey, response: session_pb2.StartSessionResponse) -> "ClientSession":
        key = crypto.client_handshake(response.server_public_key, response.hkdf_salt, private_key)
        return cls(response.session_id, response.session_token, key, response.crop_spec)

    def next_seq(self) -> int:
        return next(self._seq)

    def encrypt(self, seq: int, batch: session_pb2.CropBatch) -> session_pb2.PushCropsRequest:
        nonce, ciphertext = crypto.encrypt_batch(self.key, self.session_id, seq, batch.SerializeToString())
        return session_pb2.PushCropsRequest(
            session_id=self.session_id, session_token=self.token, seq=seq, nonce=nonce, ciphertext=ciphertext
        )

    def push_request(self, frames: Iterable[Frame], achieved_fps: float = 30.0) -> session_pb2.PushCropsRequest:
        """Encrypts the frames as the next batch in sequence."""
        return self.encrypt(self.next_seq(), crop_batch(frames, achieved_fps))

    def end_request(self, reason: str = "completed") -> session_pb2.EndSessionRequest:
        return session_pb2.EndSessionRequest(session_id=self.session_id, session_token=self.token, reason=reason)


def crop_batch(frames: Iterable[Frame], achieved_fps: float = 30.0) -> session_pb2.CropBatch:
    batch = session_pb2.CropBatch(achieved_fps=achieved_fps)
    # One capture time for the batch, set as two ints: Timestamp.FromDatetime is pure Python
    # and was ~6 % of the benchmark clients' CPU when called per frame.
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    for f in frames:
        frame = batch.frames.add(video_time_ms=f.video_time_ms, face_present=f.crop is not None)
        frame.captured_at.seconds = seconds
        frame.captured_at.nanos = nanos
        if f.crop is not None:
            frame.crop = np.ascontiguousarray(f.crop, dtype=np.uint8).tobytes()
        if f.head_yaw_deg is not None:
            frame.head_yaw_deg = f.head_yaw_deg
    return batch


def follow_slot(next_at: float, slot_at: float, period: float) -> float:
    """Send pacing for a timer-paced client: moves its next send time `next_at` towards the slot
    the server named (`slot_at`: receive time + next_batch_in_ms, on the same clock), by at most a
    tenth of the period per batch (one frame of a 10-frame batch), so the client's frame rate
    stays what it is while its phase converges. A browser moves its batch boundary instead."""
    delta = (slot_at - next_at + period / 2) % period - period / 2
    return next_at + max(-period / 10, min(period / 10, delta))


"""Client side of a session, for partner systems, tests, load tests and the benchmark.

Transport-agnostic: it builds the request messages (key exchange, encrypted batches);
the caller sends them with whatever stub it uses (grpcio, Connect, JSON-RPC).
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

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



# --- Session affinity, retries and resuming -------------------------------------------------

# A gateway in front of several servers hashes on this header (HAProxy `balance hdr(...)`, Envoy
# RING_HASH), so every call of one session reaches the same server while it lives. Native gRPC
# sends it as metadata of the same name. StartSession has no session id yet and may land anywhere.
SESSION_HEADER = "x-affectline-session"
# Statuses after which re-sending the byte-identical request is right: the server stores a batch
# at most once (UNIQUE(session, seq)), and answers a re-sent stored batch with `duplicate: true`.
RETRYABLE = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "UNKNOWN"})
_RETRY_AFTER = re.compile(r"retry_after_ms=(\d+)")


class CallFailed(Exception):
    """A call ended with a status (gRPC status name, e.g. "UNAVAILABLE", on every transport)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @property
    def retry_after_s(self) -> float | None:
        """The server's hint (`retry_after_ms=N` in the message), when it gave one."""
        found = _RETRY_AFTER.search(self.message)
        return int(found.group(1)) / 1000.0 if found else None


class GrpcSessions:
    """SessionService over native gRPC; every call after StartSession carries SESSION_HEADER."""

    def __init__(self, target: str, *, timeout_s: float = 10.0, reconnect_backoff_ms: tuple[int, int] = (250, 2000)) -> None:
        import grpc

        from affectline.v1 import session_pb2_grpc

        self._grpc = grpc
        # Reconnect soon after a server restart (grpc's default backoff grows to 120 s).
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.initial_reconnect_backoff_ms", reconnect_backoff_ms[0]),
            ("grpc.min_reconnect_backoff_ms", reconnect_backoff_ms[0]),
            ("grpc.max_reconnect_backoff_ms", reconnect_backoff_ms[1]),
        ])
        self._stub = session_pb2_grpc.SessionServiceStub(self.channel)
        self._timeout_s = timeout_s

    def _call(self, method: Callable[..., Any], request: Any, session_id: str = "") -> Any:
        metadata = ((SESSION_HEADER, session_id),) if session_id else None
        try:
            return method(request, metadata=metadata, timeout=self._timeout_s)
        except self._grpc.RpcError as exc:
            raise CallFailed(exc.code().name, exc.details() or "") from None

    def start(self, request: session_pb2.StartSessionRequest) -> session_pb2.StartSessionResponse:
        return self._call(self._stub.StartSession, request)

    def push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse:
        return self._call(self._stub.PushCrops, request, request.session_id)

    def end(self, request: session_pb2.EndSessionRequest) -> session_pb2.EndSessionResponse:
        return self._call(self._stub.EndSession, request, request.session_id)

    def close(self) -> None:
        self.channel.close()


class ConnectSessions:
    """SessionService over Connect (`application/proto`, HTTP/1.1, standard library only); every
    call after StartSession carries SESSION_HEADER, as the browser's gRPC-web calls do."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def _call(self, name: str, request: Any, response_type: Any, session_id: str = "") -> Any:
        import http.client
        import json
        import urllib.error
        import urllib.request

        headers = {"content-type": "application/proto"}
        if session_id:
            headers[SESSION_HEADER] = session_id
        req = urllib.request.Request(f"{self.base_url}/affectline.v1.SessionService/{name}",
                                      data=request.SerializeToString(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout_s) as reply:
                return response_type.FromString(reply.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                error = json.loads(body)
                raise CallFailed(str(error["code"]).upper(), str(error.get("message", ""))) from None
            except (ValueError, KeyError, TypeError):  # not a Connect error: a proxy's own page
                raise CallFailed("UNAVAILABLE", f"HTTP {exc.code}") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, closed mid-reply
            raise CallFailed("UNAVAILABLE", f"{type(exc).__name__}: {exc}") from None

    def start(self, request: session_pb2.StartSessionRequest) -> session_pb2.StartSessionResponse:
        return self._call("StartSession", request, session_pb2.StartSessionResponse)

    def push(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse:
        return self._call("PushCrops", request, session_pb2.PushCropsResponse, request.session_id)

    def end(self, request: session_pb2.EndSessionRequest) -> session_pb2.EndSessionResponse:
        return self._call("EndSession", request, session_pb2.EndSessionResponse, request.session_id)

    def close(self) -> None:
        pass


class ResumableSender:
    """Sends one session's batches so that none is lost and none is stored twice.

    Each batch is encrypted once; until its ack arrives it stays `pending` with the same seq,
    nonce and ciphertext, and a failure with a retryable status (the server restarting or
    unreachable, a proxy re-homing the session, back-pressure) re-sends those exact bytes after
    the server's `retry_after_ms` hint or an exponential backoff. `resume()` re-sends whatever is
    still pending, e.g. after the sending process lost its connection for longer than `max_wait_s`.
    """

    def __init__(self, session: ClientSession, push: Callable[[session_pb2.PushCropsRequest], session_pb2.PushCropsResponse],
                 *, max_wait_s: float = 60.0, backoff_s: tuple[float, float] = (0.05, 1.0),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self._push = push
        self.max_wait_s = max_wait_s
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clock = clock
        self.pending: dict[int, session_pb2.PushCropsRequest] = {}
        self.acked: dict[int, session_pb2.PushCropsResponse] = {}
        self.retries = 0
        self.failures: list[CallFailed] = []  # every retryable failure seen, in order

    def send(self, frames: Iterable[Frame], achieved_fps: float = 30.0) -> session_pb2.PushCropsResponse:
        """Encrypts the frames as the next batch and delivers it (retrying); CallFailed when it
        cannot (a non-retryable status, or still failing after max_wait_s: it stays pending)."""
        request = self.session.push_request(frames, achieved_fps)
        self.pending[request.seq] = request
        return self.deliver(request)

    def deliver(self, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse:
        deadline = self._clock() + self.max_wait_s
        delay = self._backoff_s[0]
        while True:
            try:
                response = self._push(request)
            except CallFailed as exc:
                if not exc.retryable or self._clock() >= deadline:
                    raise
                self.failures.append(exc)
                self.retries += 1
                hint = exc.retry_after_s
                self._sleep(min(hint if hint is not None else delay, max(0.0, deadline - self._clock())))
                delay = min(delay * 2, self._backoff_s[1])
                continue
            self.pending.pop(request.seq, None)
            self.acked[request.seq] = response
            return response

    def resume(self) -> list[session_pb2.PushCropsResponse]:
        """Re-sends every pending batch, byte-identical, in seq order."""
        return [self.deliver(self.pending[seq]) for seq in sorted(self.pending)]

    @property
    def frames_acked(self) -> int:
        return sum(len(r.results) for r in self.acked.values())

"""SessionService: consented sessions, encrypted crop batches in, emotion timelines out.

One implementation for every transport (native gRPC, gRPC-web, Connect, JSON-RPC).
Errors are raised as ConnectError with a gRPC status code; each transport maps it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable, Protocol, TypeVar

import numpy as np
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.message import DecodeError
from sqlalchemy.exc import IntegrityError

from affectline import crypto
from affectline.inference.batcher import QueueFull
from affectline.inference.smoothing import EmaState, SmoothingConfig, smooth_batch
from affectline.metrics import Metrics
from affectline.rate_limit import SESSION_SETTING, RateLimiter, rate_limited
from affectline.services import validation
from affectline.services.crop_batch_wire import count_crop_frames
from affectline.services.live_sessions import LiveSession, LiveSessions
from affectline.services.proto_convert import add_frame_results, from_timestamp, scores_message, timestamp, top_emotion
from affectline.services.send_pacer import SendPacer
from affectline.services.session_events import SessionEventFanOut, SessionEvents
from affectline.storage.batch_writer import GroupCommitWriter
from affectline.storage.records import EMOTIONS, BatchRecord, ConsentInfo, FrameRecord, SessionRecord, ViewerInfo
from affectline.storage.timeline_store import DEMOGRAPHICS_SCOPE, TimelineStore, TooManyOpenSessions
from affectline.v1 import session_pb2

T = TypeVar("T")
log = logging.getLogger(__name__)

REQUIRED_CONSENT_SCOPE = "emotion"
# seq is u64 on the wire (it is in the AAD as such) but BIGINT in the database.
MAX_SEQ = 2**63 - 1
# Upper bound of one serialized CropFrame's bytes besides its crop (tags, lengths, time,
# timestamp, flags, head pose: 55 at most), and of a CropBatch's own fields plus the GCM tag.
FRAME_OVERHEAD_BYTES = 64
BATCH_SLACK_BYTES = 64 + 16  # + the 16-byte AES-GCM tag
# The hint in UNAVAILABLE answers to a failed write (e.g. the database unreachable): clients back off.
STORAGE_RETRY_AFTER_MS = 500


@dataclass(frozen=True, slots=True)
class CropSpec:
    width: int
    height: int
    channels: int
    model: str
    max_frames_per_batch: int

    @property
    def crop_bytes(self) -> int:
        return self.width * self.height * self.channels

    @property
    def max_ciphertext_bytes(self) -> int:
        """The largest ciphertext a batch within the limits can have: checked before decrypting."""
        return self.max_frames_per_batch * (self.crop_bytes + FRAME_OVERHEAD_BYTES) + BATCH_SLACK_BYTES


class Score(Protocol):
    """The inference engine as the service sees it (DynamicBatcher.submit)."""

    def __call__(self, crops: np.ndarray, *, sequence: str | None = None) -> Awaitable[np.ndarray]: ...


def _error(code: Code, message: str) -> ConnectError:
    return ConnectError(code, message)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionService:
    def __init__(
        self,
        *,
        store: TimelineStore,
        writer: GroupCommitWriter,
        score: Score,
        crop_spec: CropSpec,
        key_wrapper: crypto.KeyWrapper,
        metrics: Metrics,
        session_ttl: timedelta,
        smoothing: SmoothingConfig = SmoothingConfig(),
        pacer: SendPacer | None = None,
        max_sessions_per_viewer: int = 16,
        idle_evict_s: float = 600.0,
        rate_limiter: RateLimiter | None = None,
        events: SessionEvents = SessionEventFanOut(),
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._store = store
        self._writer = writer
        self._score = score
        self._spec = crop_spec
        self._wrapper = key_wrapper
        self._metrics = metrics
        self._ttl = session_ttl
        self._smoothing = smoothing
        self._pacer = pacer  # None: no send pacing hints
        self._now = now
        self._events = events  # the live feed and webhooks: in-memory work only
        self._max_per_viewer = max_sessions_per_viewer
        self._rate = rate_limiter  # batches per second per session (rate_limit.py); None: unlimited
        # An evicted session also gives its send slot up (it gets a new one if it comes back).
        self._sessions = LiveSessions(store, key_wrapper, self._io, idle_s=idle_evict_s, now=now,
                                      on_evict=self._evicted)
        self._served: set[str] = set()  # held sessions already counted in affectline_sessions_served_total
        # Labelled counters used on every batch, looked up once.
        self._frames_with_face = metrics.frames.labels(face_present="true")
        self._frames_without_face = metrics.frames.labels(face_present="false")

    def _evicted(self, session_id: str) -> None:
        self._served.discard(session_id)
        if self._pacer is not None:
            self._pacer.leave(session_id)

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        """Runs a blocking storage call off the event loop."""
        return await asyncio.to_thread(fn, *args)

    # --- StartSession -------------------------------------------------------------------

    async def start_session(self, request: session_pb2.StartSessionRequest, ctx: object = None) -> session_pb2.StartSessionResponse:
        validation.check_id(request.video_id, "video_id")
        validation.check_id(request.variant_id, "variant_id", allow_empty=True)
        viewer = request.viewer
        validation.check_id(viewer.viewer_id, "viewer.viewer_id")
        consent = viewer.consent
        # Its range (so that it converts to a datetime) is checked by validation.check_start below.
        if not consent.notice_version or not consent.HasField("consented_at"):
            raise _error(Code.INVALID_ARGUMENT, "viewer.consent needs notice_version and consented_at")
        scopes = tuple(dict.fromkeys(s.strip() for s in consent.scopes if s.strip()))
        if REQUIRED_CONSENT_SCOPE not in scopes:
            raise _error(
                Code.PERMISSION_DENIED,
                f"the viewer has not consented to scope {REQUIRED_CONSENT_SCOPE!r}; no session can start",
            )
        unknown = [e for e in consent.allowed_emotions if e not in EMOTIONS]
        if unknown:
            raise _error(Code.INVALID_ARGUMENT, f"viewer.consent.allowed_emotions: unknown emotion {unknown[0]!r} "
                                                f"(expected some of {', '.join(EMOTIONS)})")
        allowed = tuple(e for e in EMOTIONS if e in set(consent.allowed_emotions))  # () means all
        demo = viewer.demographics
        if (demo.age_band or demo.gender or demo.region) and DEMOGRAPHICS_SCOPE not in scopes:
            raise _error(
                Code.INVALID_ARGUMENT,
                f"demographics were sent without the {DEMOGRAPHICS_SCOPE!r} consent scope",
            )
        fps = request.capture_fps or 30.0
        if not 1.0 <= fps <= 120.0:
            raise _error(Code.INVALID_ARGUMENT, f"capture_fps must be within 1..120, got {fps}")
        validation.check_start(request, self._now(), self._spec.max_frames_per_batch)  # lengths, charsets, ranges
        try:
            server_public, salt, key = crypto.server_handshake(request.client_public_key)
        except crypto.BadPublicKey as exc:
            self._metrics.decrypt_failures.labels(reason="bad_public_key").inc()
            raise _error(Code.INVALID_ARGUMENT, f"client_public_key: {exc}") from exc

        now = self._now()
        session_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        record = SessionRecord(
            session_id=session_id,
            video_id=request.video_id,
            variant_id=request.variant_id,
            viewer=ViewerInfo(viewer.viewer_id, demo.age_band, demo.gender, demo.region),
            consent=ConsentInfo(consent.notice_version, from_timestamp(consent.consented_at), scopes, allowed),
            capture_fps=fps,
            model=self._spec.model,
            started_at=now,
            expires_at=now + self._ttl,
            token_sha256=_token_hash(token),
            wrapped_key=self._wrapper.wrap(key, session_id),
        )
        try:
            await self._io(self._store.create_session, record, self._max_per_viewer)
        except TooManyOpenSessions as exc:
            raise _error(
                Code.RESOURCE_EXHAUSTED,
                f"viewer {viewer.viewer_id!r} already has {exc.open_sessions} open sessions, the most allowed; "
                "end one (EndSession) or retry after one expires",
            ) from exc
        self._sessions.add(record, key)
        self._metrics.active_sessions.inc()
        spec = self._spec
        response = session_pb2.StartSessionResponse(
            session_id=session_id,
            server_public_key=server_public,
            hkdf_salt=salt,
            crop_spec=session_pb2.CropSpec(
                width=spec.width, height=spec.height, channels=spec.channels, pixel_format="gray8",
                max_frames_per_batch=spec.max_frames_per_batch, model=spec.model,
            ),
            expires_at=timestamp(record.expires_at),
            session_token=token,
        )
        period = SendPacer.period_for(fps, request.frames_per_batch)
        if self._pacer is not None and period is not None:
            response.first_batch_in_ms = round(self._pacer.join(session_id, period) * 1000)
        return response

    # --- PushCrops / StreamCrops ----------------------------------------------------------

    async def push_crops(self, request: session_pb2.PushCropsRequest, ctx: object = None) -> session_pb2.PushCropsResponse:
        live = await self._authorize(request.session_id, request.session_token)
        if self._rate is not None:  # after the token check: nobody can drain another session's bucket
            wait = self._rate.acquire(live.record.session_id)
            if wait is not None:
                raise rate_limited("for this session", wait, SESSION_SETTING, ctx)
        async with live.lock:  # one batch of a session at a time: order and idempotency
            # Checked under the lock: a batch queued behind EndSession must see it ended.
            self._check_open(live)
            return await self._accept(live, request)

    async def stream_crops(
        self, requests: AsyncIterator[session_pb2.PushCropsRequest], ctx: object = None
    ) -> AsyncIterator[session_pb2.PushCropsResponse]:
        async for request in requests:
            yield await self.push_crops(request, ctx)

    async def _authorize(self, session_id: str, token: str) -> LiveSession:
        if not session_id:
            raise _error(Code.INVALID_ARGUMENT, "session_id is required")
        validation.check_id(session_id, "session_id")
        validation.check_token(token)
        try:
            live = await self._sessions.get(session_id)
        except crypto.DecryptionFailed as exc:
            raise _error(Code.FAILED_PRECONDITION, str(exc)) from exc
        if live is None:
            raise _error(Code.NOT_FOUND, f"unknown session {session_id!r}")
        if not hmac.compare_digest(_token_hash(token), live.record.token_sha256):
            self._metrics.decrypt_failures.labels(reason="bad_token").inc()
            raise _error(Code.UNAUTHENTICATED, "session_token does not match this session")
        return live

    def _check_open(self, live: LiveSession) -> None:
        record = live.record
        if record.ended_at is not None:
            raise _error(Code.FAILED_PRECONDITION, f"session {record.session_id} has ended ({record.end_reason})")
        if self._now() >= record.expires_at:
            self._metrics.decrypt_failures.labels(reason="expired").inc()
            raise _error(Code.FAILED_PRECONDITION, f"session {record.session_id} expired at {record.expires_at.isoformat()}")

    def _storage_failed(self, session_id: str, seq: int, what: str, exc: Exception) -> ConnectError:
        """A batch that could not be stored: counted, logged with the cause (which may hold SQL
        and its parameters), answered without it, with the retry hint clients follow."""
        self._metrics.db_write_errors.inc()
        log.error("session %s seq %d: storing the batch %s: %s", session_id, seq, what, exc)
        return _error(Code.UNAVAILABLE, f"seq {seq}: could not store the batch; re-send the same batch after "
                                        f"retry_after_ms={STORAGE_RETRY_AFTER_MS}")

    def _gone(self, session_id: str) -> ConnectError:
        """The session's row is gone (erased, or purged by retention): drop it from memory."""
        self._sessions.forget(session_id)
        return _error(Code.NOT_FOUND, f"session {session_id} no longer exists (erased)")

    async def _accept(self, live: LiveSession, request: session_pb2.PushCropsRequest) -> session_pb2.PushCropsResponse:
        sid, seq = live.record.session_id, request.seq
        spec = self._spec
        if seq > MAX_SEQ:
            raise _error(Code.INVALID_ARGUMENT, f"seq must be at most 2^63-1, got {seq}")
        if len(request.nonce) != crypto.NONCE_BYTES:
            raise _error(Code.INVALID_ARGUMENT, f"nonce must be {crypto.NONCE_BYTES} bytes, got {len(request.nonce)}")
        if len(request.ciphertext) > spec.max_ciphertext_bytes:
            raise _error(
                Code.INVALID_ARGUMENT,
                f"seq {seq}: ciphertext of {len(request.ciphertext)} bytes is larger than any batch of at most "
                f"{spec.max_frames_per_batch} frames ({spec.max_ciphertext_bytes} bytes)",
            )
        digest = crypto.batch_digest(request.nonce, request.ciphertext)
        if live.max_seq is not None and seq <= live.max_seq:  # only then can it be a retry
            previous = await self._io(self._store.get_batch, sid, seq)
            if previous is not None:
                if hmac.compare_digest(previous.digest, digest):
                    # A client retry after a lost ack: acknowledge again, store nothing.
                    return self._ack(seq, previous.frames, live, duplicate=True)
                self._metrics.decrypt_failures.labels(reason="replayed_seq").inc()
                raise _error(Code.ALREADY_EXISTS, f"seq {seq} was already accepted with different content (replayed seq)")
        try:
            plaintext = crypto.decrypt_batch(live.key, sid, seq, request.nonce, request.ciphertext)
        except crypto.DecryptionFailed as exc:
            self._metrics.decrypt_failures.labels(reason="tampered").inc()
            raise _error(Code.INVALID_ARGUMENT, f"seq {seq}: {exc}") from exc
        batch = session_pb2.CropBatch()
        try:
            n = count_crop_frames(plaintext, stop_after=spec.max_frames_per_batch)
            if n > spec.max_frames_per_batch:  # refused before parsing: no frame bombs
                raise _error(
                    Code.INVALID_ARGUMENT,
                    f"seq {seq}: the batch holds more than {spec.max_frames_per_batch} frames; "
                    f"at most {spec.max_frames_per_batch} are allowed",
                )
            batch.ParseFromString(plaintext)
        except (DecodeError, ValueError) as exc:
            raise _error(Code.INVALID_ARGUMENT, f"seq {seq}: decrypted payload is not a CropBatch: {exc}") from exc
        del plaintext
        smoothing = EmaState(live.smoothing.probs, live.smoothing.last_time_ms)  # committed only if stored
        frames = await self._score_batch(sid, seq, batch, smoothing)
        record = BatchRecord(seq=seq, nonce=request.nonce, digest=digest, frames=tuple(frames))
        try:
            stored = await self._writer.write(sid, record)
        except IntegrityError as exc:
            # The nonce is checked here, by the database's UNIQUE(session, nonce), instead of a
            # lookup before every batch: reuse is an attack or a client bug, never the hot path.
            if await self._io(self._store.nonce_used, sid, request.nonce):
                self._metrics.decrypt_failures.labels(reason="nonce_reuse").inc()
                raise _error(Code.INVALID_ARGUMENT, f"nonce reused: seq {seq} carries a nonce an earlier batch used") from exc
            if await self._io(self._store.get_session, sid) is None:  # erased while live
                raise self._gone(sid) from exc
            raise self._storage_failed(sid, seq, "violated a constraint", exc) from exc
        except Exception as exc:
            raise self._storage_failed(sid, seq, "failed", exc) from exc
        if not stored:
            # A racing copy of this seq was stored first: a retry if the content is the same.
            previous = await self._io(self._store.get_batch, sid, seq)
            if previous is not None and hmac.compare_digest(previous.digest, digest):
                return self._ack(seq, previous.frames, live, duplicate=True)
            raise _error(Code.ALREADY_EXISTS, f"seq {seq} was already accepted with different content (replayed seq)")
        live.smoothing = smoothing
        live.max_seq = seq if live.max_seq is None else max(live.max_seq, seq)
        live.frames_accepted += len(frames)
        if sid not in self._served:
            self._served.add(sid)
            self._metrics.sessions_served.inc()
        self._events.batch_stored(live.record, frames)
        with_face = sum(f.face_present for f in frames)
        self._frames_with_face.inc(with_face)
        self._frames_without_face.inc(len(frames) - with_face)
        return self._ack(seq, frames, live, duplicate=False)

    async def _score_batch(
        self, session_id: str, seq: int, batch: session_pb2.CropBatch, smoothing: EmaState
    ) -> list[FrameRecord]:
        spec = self._spec
        n = len(batch.frames)  # already bounded by count_crop_frames
        if n == 0:
            raise _error(Code.INVALID_ARGUMENT, f"seq {seq}: the batch holds no frames")
        if n > spec.max_frames_per_batch:
            raise _error(
                Code.INVALID_ARGUMENT,
                f"seq {seq}: the batch holds {n} frames; at most {spec.max_frames_per_batch} are allowed",
            )
        frames = batch.frames
        validation.check_batch(batch, seq)
        face_rows: list[int] = []
        now = self._now()
        for i, f in enumerate(frames):
            validation.check_frame(f, seq, i, now)
            if f.video_time_ms < 0:
                raise _error(Code.INVALID_ARGUMENT, f"seq {seq} frame {i}: video_time_ms must be >= 0")
            if f.face_present:
                if len(f.crop) != spec.crop_bytes:
                    raise _error(
                        Code.INVALID_ARGUMENT,
                        f"seq {seq} frame {i}: crop has {len(f.crop)} bytes, expected {spec.crop_bytes} "
                        f"({spec.width}x{spec.height}x{spec.channels} gray8)",
                    )
                face_rows.append(i)
        probs_rows: list[list[float]] = []
        if face_rows:
            crops = np.empty((len(face_rows), spec.height, spec.width), dtype=np.uint8)
            flat = crops.reshape(len(face_rows), spec.crop_bytes)
            for j, i in enumerate(face_rows):
                flat[j] = np.frombuffer(frames[i].crop, dtype=np.uint8)
            try:
                probs = await self._score(crops, sequence=session_id)
            except QueueFull as exc:
                raise _error(
                    Code.RESOURCE_EXHAUSTED,
                    f"seq {seq}: server busy, {exc}; re-send the same batch after retry_after_ms={exc.retry_after_s * 1000:.0f}",
                ) from exc
            finally:
                crops.fill(0)  # crops are never kept past inference
            probs_rows = probs.tolist()  # Python floats, one C call for the whole batch
        smoothed_rows = smooth_batch(smoothing, [frames[i].video_time_ms for i in face_rows], probs_rows, self._smoothing)
        scored = {i: (tuple(p), s) for i, p, s in zip(face_rows, probs_rows, smoothed_rows, strict=True)}
        records = []
        for i, f in enumerate(frames):
            probs_i, smoothed_i = scored.get(i, (None, None))
            records.append(FrameRecord(
                seq=seq,
                index=i,
                video_time_ms=f.video_time_ms,
                captured_at=from_timestamp(f.captured_at) if f.HasField("captured_at") else None,
                face_present=f.face_present,
                probs=probs_i,
                head_yaw_deg=f.head_yaw_deg if f.HasField("head_yaw_deg") else None,
                head_pitch_deg=f.head_pitch_deg if f.HasField("head_pitch_deg") else None,
                face_box_size=f.face_box_size if f.HasField("face_box_size") else None,
                smoothed=smoothed_i,
            ))
        batch.Clear()
        return records

    def _ack(self, seq: int, frames: tuple[FrameRecord, ...] | list[FrameRecord], live: LiveSession, *, duplicate: bool) -> session_pb2.PushCropsResponse:
        response = session_pb2.PushCropsResponse(seq=seq, duplicate=duplicate, frames_accepted_total=live.frames_accepted)
        add_frame_results(frames, response)
        if self._pacer is not None:
            delay = self._pacer.next_send_in(live.record.session_id)
            if delay is not None:
                response.next_batch_in_ms = round(delay * 1000)
        return response

    # --- EndSession ---------------------------------------------------------------------

    async def end_session(self, request: session_pb2.EndSessionRequest, ctx: object = None) -> session_pb2.EndSessionResponse:
        validation.check_text(request.reason, "reason")
        live = await self._authorize(request.session_id, request.session_token)
        async with live.lock:  # let an in-flight batch finish first
            was_open = live.record.ended_at is None
            try:
                record = await self._io(self._store.end_session, live.record.session_id, request.reason or "completed", self._now())
            except KeyError:
                raise self._gone(live.record.session_id) from None
            live.record = record
            summary = await self._io(self._store.session_summary, record.session_id)
        self._sessions.forget(record.session_id)  # and its send slot
        if was_open:
            self._metrics.active_sessions.dec()
        response = session_pb2.EndSessionResponse(
            summary=session_pb2.SessionSummary(
                session_id=record.session_id,
                video_id=record.video_id,
                variant_id=record.variant_id,
                frames_total=summary.frames_total,
                frames_with_face=summary.frames_with_face,
                mean_scores=scores_message(summary.mean_probs),
                dominant_emotion=top_emotion(summary.mean_probs),
                first_video_time_ms=summary.first_video_time_ms or 0,
                last_video_time_ms=summary.last_video_time_ms or 0,
                started_at=timestamp(record.started_at),
                ended_at=timestamp(record.ended_at),
                end_reason=record.end_reason,
            )
        )
        if was_open:  # once per session: a repeated EndSession answers again, tells no one
            self._events.session_ended(response.summary)
        return response

"""Plain records that cross the storage boundary.

Services and analytics see these dataclasses, never ORM rows, so the storage
layer can change (SQLite, PostgreSQL COPY, ...) without touching callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True, slots=True)
class ConsentInfo:
    notice_version: str
    consented_at: datetime
    scopes: tuple[str, ...]
    # Emotions the viewer allows to be stored and reported, in EMOTIONS order; () means all.
    allowed_emotions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ViewerInfo:
    viewer_id: str
    age_band: str = ""
    gender: str = ""
    region: str = ""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    video_id: str
    variant_id: str
    viewer: ViewerInfo
    consent: ConsentInfo
    capture_fps: float
    model: str  # "name/version" from the model registry
    started_at: datetime
    expires_at: datetime
    # sha256 of the bearer token; the token itself is never stored.
    token_sha256: bytes
    # The session's AES-256-GCM key, wrapped (encrypted) with the server's key-encryption key,
    # so a restarted server can keep accepting a session's batches.
    wrapped_key: bytes
    ended_at: datetime | None = None
    end_reason: str = ""


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One captured frame of a session, as scored and stored."""

    seq: int  # batch sequence number
    index: int  # position of the frame inside its batch
    video_time_ms: int
    captured_at: datetime | None
    face_present: bool
    # Seven probabilities in EMOTIONS order when face_present, else None.
    probs: tuple[float, ...] | None
    head_yaw_deg: float | None = None
    head_pitch_deg: float | None = None
    face_box_size: float | None = None
    # The session's temporally smoothed probabilities at this frame (face frames only).
    smoothed: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """An accepted encrypted batch: what makes a retry recognisable."""

    seq: int
    nonce: bytes
    # sha256(nonce || ciphertext): equal for a client retry, different for a replayed seq.
    digest: bytes
    frames: tuple[FrameRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SessionSummaryRecord:
    session_id: str
    frames_total: int
    frames_with_face: int
    mean_probs: tuple[float, ...] | None  # over frames with a face
    first_video_time_ms: int | None
    last_video_time_ms: int | None


@dataclass(frozen=True, slots=True)
class BucketRecord:
    start_ms: int
    mean_probs: tuple[float, ...] | None  # over frames with a face in the bucket
    viewers: int  # distinct sessions with a frame in the bucket
    frames: int
    frames_with_face: int

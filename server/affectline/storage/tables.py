"""ORM schema of the timeline store (SQLModel tables).

This module only *describes* the schema: the database is always created by the Alembic
migrations in the repository's ``migrations/`` folder, which must match these classes
(tests/test_storage.py checks that with Alembic's compare_metadata).

Constraint and index names are explicit so that later migrations can refer to them by the
same name on SQLite and PostgreSQL.
"""

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Double,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel



class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as
    naive UTC text and the zone is re-attached on the way out. Naive datetimes are refused:
    guessing their zone would silently shift stored times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
    return value.astimezone(UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ts(*, nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, nullable=nullable, **kw)


def _big_int() -> Any:
    # BIGINT (migration 0005: seq is u64 on the wire); SQLite's INTEGER is already 64-bit.
    return BigInteger().with_variant(Integer(), "sqlite")


class Video(SQLModel, table=True):
    __tablename__ = "videos"

    video_id: str = Field(primary_key=True)
    title: str = ""
    created_at: datetime = _ts(default_factory=_utc_now)
    # The playable file (migration 0003); "" for videos known only from sessions.
    media_path: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    mime_type: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    # Migration 0009. Days this campaign's sessions are kept; NULL: the global AFFECTLINE_RETENTION_DAYS.
    retention_days: int | None = Field(default=None, nullable=True)


class Variant(SQLModel, table=True):
    """A version of a video (cut, ad placement, ...); variant_id "" is the default one."""

    __tablename__ = "variants"
    __table_args__ = (
        ForeignKeyConstraint(["video_id"], ["videos.video_id"], name="fk_variants_video"),
    )

    video_id: str = Field(primary_key=True)
    variant_id: str = Field(default="", primary_key=True)


class Viewer(SQLModel, table=True):
    __tablename__ = "viewers"

    viewer_id: str = Field(primary_key=True)
    age_band: str = ""
    gender: str = ""
    region: str = ""
    created_at: datetime = _ts(default_factory=_utc_now)


class ViewingSession(SQLModel, table=True):
    __tablename__ = "sessions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["video_id", "variant_id"],
            ["variants.video_id", "variants.variant_id"],
            name="fk_sessions_variant",
        ),
        ForeignKeyConstraint(["viewer_id"], ["viewers.viewer_id"], name="fk_sessions_viewer"),
        Index("ix_sessions_video_variant", "video_id", "variant_id"),
        # Open sessions per viewer (StartSession's cap) and erasure find a viewer's sessions (0005).
        Index("ix_sessions_viewer", "viewer_id"),
    )

    session_id: str = Field(primary_key=True)
    video_id: str
    variant_id: str
    viewer_id: str
    consent_notice_version: str
    consent_at: datetime = _ts()
    consent_scopes: str = Field(sa_type=Text)  # JSON list of scope names
    capture_fps: float
    model: str
    started_at: datetime = _ts()
    expires_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True, default=None)
    end_reason: str = ""
    token_sha256: bytes = Field(sa_type=LargeBinary)
    wrapped_key: bytes = Field(sa_type=LargeBinary)
    # Migration 0007. JSON list of the emotions the viewer allows; "" means all seven.
    allowed_emotions: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    # Migration 0007. Where pass assignment stands after the frames rolled up so far (JSON,
    # storage/rollup_state.py); NULL until the first rollup, and then rebuilt from the frames.
    rollup_state: str | None = Field(default=None, sa_type=Text, nullable=True)


class CropBatchLog(SQLModel, table=True):
    """One accepted upload batch with its scored frames, packed (storage/frame_pack.py).

    One row per batch, not per frame (migration 0010): 10-30x fewer rows per second. On
    PostgreSQL the table is partitioned by `session_day`, the UTC day the session started, so
    all of a session's batches share one partition (which keeps (session_id, seq) and
    (session_id, nonce) unique across partitions, because the key includes the day) and
    retention drops whole days (storage/partitions.py). (session_id, nonce) is unique so a
    replayed nonce is refused by the database even if the service's own check were raced.
    """

    __tablename__ = "batches"
    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_batches_session", ondelete="CASCADE"
        ),
        UniqueConstraint("session_id", "nonce", "session_day", name="uq_batches_session_nonce"),
    )

    session_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=_big_int())
    session_day: date = Field(primary_key=True, sa_type=Date)
    nonce: bytes = Field(sa_type=LargeBinary)
    digest: bytes = Field(sa_type=LargeBinary)
    frames: int
    accepted_at: datetime = _ts()
    frame_data: bytes = Field(sa_type=LargeBinary)


def _sum() -> Any:
    # Sums of many float32 values: double precision keeps them exact enough to recombine.
    return Field(default=0.0, sa_type=Double)


class SecondRollupRow(SQLModel, table=True):
    """Sums and counts of one session's frames in one video second and pass (migration 0007).

    Columns map one to one onto analytics.rollup.SecondRollup; written at ingest in the
    frames' transaction, deleted with the session.
    """

    __tablename__ = "rollups"
    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_rollups_session", ondelete="CASCADE"
        ),
    )

    session_id: str = Field(primary_key=True)
    second: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    pass_index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    frames: int = 0
    frames_with_face: int = 0
    attentive: int = 0
    pose_known: int = 0
    angry_sum: float = _sum()
    angry_frames: int = 0
    disgust_sum: float = _sum()
    disgust_frames: int = 0
    fear_sum: float = _sum()
    fear_frames: int = 0
    happy_sum: float = _sum()
    happy_frames: int = 0
    sad_sum: float = _sum()
    sad_frames: int = 0
    surprise_sum: float = _sum()
    surprise_frames: int = 0
    neutral_sum: float = _sum()
    neutral_frames: int = 0
    confidence_sum: float = _sum()
    confidence_frames: int = 0
    valence_sum: float = _sum()
    valence_frames: int = 0
    expressiveness_sum: float = _sum()
    expressiveness_frames: int = 0
    engagement_sum: float = _sum()
    engagement_frames: int = 0
    sentiment_sum: float = _sum()
    sentiment_frames: int = 0


# The rollups columns after the key, in table order: what storage/rollup_rows.py reads and writes.
ROLLUP_VALUE_COLUMNS: tuple[str, ...] = tuple(
    name for name in SecondRollupRow.model_fields if name not in ("session_id", "second", "pass_index")
)

class Webhook(SQLModel, table=True):
    """A partner endpoint that receives a campaign's events (migration 0008; webhooks/)."""

    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_video", "video_id"),)

    webhook_id: str = Field(primary_key=True)
    video_id: str
    url: str = Field(sa_type=Text)
    events: str = Field(sa_type=Text)  # JSON list of event names
    description: str = Field(default="", sa_type=Text)
    # The HMAC signing secret, wrapped with the key-encryption key like session keys: the
    # server must read it back to sign, and the database alone must not reveal it.
    wrapped_secret: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key of an analyst or partner system (migration 0006). The id is public (it is part
    of the key); of the secret only its SHA-256 is kept, so a copy of the table opens nothing."""

    __tablename__ = "api_keys"

    key_id: str = Field(primary_key=True)
    name: str
    secret_sha256: bytes = Field(sa_type=LargeBinary)
    scopes: str = Field(sa_type=Text)  # JSON list of scope names
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True, default=None)
    revoked_at: datetime | None = _ts(nullable=True, default=None)
    # Written at most once a minute per key and server (auth/authenticator.py).
    last_used_at: datetime | None = _ts(nullable=True, default=None)

"""Initial schema: videos, variants, viewers, sessions, batches, frames.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

Hand-written to mirror affectline/storage/tables.py; it deliberately does not import the
app's types, so this revision stays valid whatever tables.py becomes later.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _real(name: str) -> sa.Column:
    return sa.Column(name, sa.REAL(), nullable=True)


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("video_id", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("video_id"),
    )
    op.create_table(
        "variants",
        sa.Column("video_id", sa.String(), nullable=False),
        sa.Column("variant_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("video_id", "variant_id"),
        sa.ForeignKeyConstraint(["video_id"], ["videos.video_id"], name="fk_variants_video"),
    )
    op.create_table(
        "viewers",
        sa.Column("viewer_id", sa.String(), nullable=False),
        sa.Column("age_band", sa.String(), nullable=False),
        sa.Column("gender", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("viewer_id"),
    )
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("video_id", sa.String(), nullable=False),
        sa.Column("variant_id", sa.String(), nullable=False),
        sa.Column("viewer_id", sa.String(), nullable=False),
        sa.Column("consent_notice_version", sa.String(), nullable=False),
        _ts("consent_at"),
        sa.Column("consent_scopes", sa.Text(), nullable=False),
        sa.Column("capture_fps", sa.Float(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        _ts("started_at"),
        _ts("expires_at"),
        _ts("ended_at", nullable=True),
        sa.Column("end_reason", sa.String(), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
        sa.ForeignKeyConstraint(
            ["video_id", "variant_id"],
            ["variants.video_id", "variants.variant_id"],
            name="fk_sessions_variant",
        ),
        sa.ForeignKeyConstraint(["viewer_id"], ["viewers.viewer_id"], name="fk_sessions_viewer"),
    )
    op.create_index("ix_sessions_video_variant", "sessions", ["video_id", "variant_id"])
    op.create_table(
        "batches",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        _ts("accepted_at"),
        sa.PrimaryKeyConstraint("session_id", "seq"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_batches_session", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("session_id", "nonce", name="uq_batches_session_nonce"),
    )
    op.create_table(
        "frames",
        # BIGSERIAL on PostgreSQL; on SQLite only INTEGER PRIMARY KEY auto-increments.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("video_time_ms", sa.BigInteger(), nullable=False),
        _ts("captured_at", nullable=True),
        sa.Column("face_present", sa.Boolean(), nullable=False),
        *(
            _real(f"p_{emotion}")
            for emotion in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
        ),
        _real("head_yaw_deg"),
        _real("head_pitch_deg"),
        _real("face_box_size"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_frames_session", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "seq"],
            ["batches.session_id", "batches.seq"],
            name="fk_frames_batch",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "session_id", "seq", "frame_index", name="uq_frames_session_seq_index"
        ),
    )
    op.create_index("ix_frames_session_time", "frames", ["session_id", "video_time_ms"])


def downgrade() -> None:
    op.drop_index("ix_frames_session_time", table_name="frames")
    op.drop_table("frames")
    op.drop_table("batches")
    op.drop_index("ix_sessions_video_variant", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("viewers")
    op.drop_table("variants")
    op.drop_table("videos")

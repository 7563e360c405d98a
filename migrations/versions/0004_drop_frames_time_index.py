"""Drop ix_frames_session_time: no query reads it, and every ingested frame paid for it.

Timelines and summaries find a session's frames through uq_frames_session_seq_index
(session_id first), and video curves group all of a video's frames, so the
(session_id, video_time_ms) index was only written, never used. On SQLite it was ~15 % of
the ingest writer's CPU per frame (docs/performance.md, session 7).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_frames_session_time", table_name="frames")


def downgrade() -> None:
    op.create_index("ix_frames_session_time", "frames", ["session_id", "video_time_ms"])

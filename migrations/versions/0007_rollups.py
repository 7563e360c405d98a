"""Per session-second analytics rollups and per-viewer emotion opt-outs.

`rollups` holds sums and counts per (session, video second, pass), written with the frames
and deleted with the session (ON DELETE CASCADE). `sessions` gains `allowed_emotions` (the
consent record's opt-outs) and `rollup_state` (pass assignment so far, so ingest resumes
after a restart). Existing sessions get empty rollups: `affectline analytics rebuild` fills
them from the frames.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_SUMMED = ("confidence", "valence", "expressiveness", "engagement", "sentiment")


def upgrade() -> None:
    # Plain ALTERs, not batch mode: rebuilding `sessions` on SQLite would cascade-delete frames.
    op.add_column("sessions", sa.Column("allowed_emotions", sa.Text(), nullable=False, server_default=""))
    op.add_column("sessions", sa.Column("rollup_state", sa.Text(), nullable=True))
    sums = [
        column
        for name in (*_EMOTIONS, *_SUMMED)
        for column in (
            sa.Column(f"{name}_sum", sa.Double(), nullable=False),
            sa.Column(f"{name}_frames", sa.Integer(), nullable=False),
        )
    ]
    op.create_table(
        "rollups",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("second", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("pass_index", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("frames_with_face", sa.Integer(), nullable=False),
        sa.Column("attentive", sa.Integer(), nullable=False),
        sa.Column("pose_known", sa.Integer(), nullable=False),
        *sums,
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.session_id"], name="fk_rollups_session", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("session_id", "second", "pass_index"),
    )


def downgrade() -> None:
    op.drop_table("rollups")
    op.drop_column("sessions", "rollup_state")  # SQLite >= 3.35 drops a plain column in place
    op.drop_column("sessions", "allowed_emotions")

"""Smoothed probabilities per frame (s_angry .. s_neutral).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Raw probabilities stay in p_*; s_* hold the session's time-aware EMA at that frame, so
timelines read back exactly what the live acks showed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def upgrade() -> None:
    for emotion in EMOTIONS:
        op.add_column("frames", sa.Column(f"s_{emotion}", sa.REAL(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("frames") as batch:  # SQLite needs a table rebuild to drop columns
        for emotion in reversed(EMOTIONS):
            batch.drop_column(f"s_{emotion}")

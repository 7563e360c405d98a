"""Per-campaign retention: `videos.retention_days`.

NULL (every existing video) follows the global AFFECTLINE_RETENTION_DAYS; a number N deletes
that video's sessions N days after they started, shorter or longer than the global default
(`affectline videos set-retention VIDEO --days N`; the hourly purge honours it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: batch mode would rebuild `videos` on SQLite.
    op.add_column("videos", sa.Column("retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("videos", "retention_days")  # SQLite >= 3.35 drops a plain column in place

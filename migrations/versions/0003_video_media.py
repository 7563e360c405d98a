"""Media file of a video (path on the server, MIME type) so the viewer page can play it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("videos", sa.Column("media_path", sa.Text(), nullable=False, server_default=""))
    op.add_column("videos", sa.Column("mime_type", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:  # SQLite rebuilds the table to drop columns
        batch.drop_column("mime_type")
        batch.drop_column("media_path")

"""batches.seq and frames.seq become BIGINT; sessions get an index by viewer.

seq is a u64 on the wire, but was a 32-bit INTEGER on PostgreSQL: a batch with seq >= 2^31
could never be stored (the service now refuses seq > 2^63-1 itself). SQLite's INTEGER is
already 64-bit, so only PostgreSQL's columns change. ix_sessions_viewer serves StartSession's
cap on a viewer's open sessions and erasure by viewer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ_COLUMNS = (("batches", "seq"), ("frames", "seq"))  # referenced column first (fk_frames_batch)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _SEQ_COLUMNS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)
    op.create_index("ix_sessions_viewer", "sessions", ["viewer_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_viewer", table_name="sessions")
    if op.get_bind().dialect.name == "postgresql":
        for table, column in reversed(_SEQ_COLUMNS):
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)

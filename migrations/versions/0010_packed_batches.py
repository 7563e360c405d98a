"""Packed frames: one `batches` row per batch with its frames in `frame_data`; no `frames` table.

Each batch's frames become one binary value (format version 1 of storage/frame_pack.py,
restated here so this revision keeps working whatever that module becomes): a version byte,
then per frame, little-endian and unpadded, int64 video_time_ms, int64 captured_at in
microseconds since the epoch (INT64_MIN: none), uint8 face_present, 7 float32 probabilities,
3 float32 (yaw, pitch, face box size) and 7 float32 smoothed probabilities, NaN for NULL.
A frame's index is its position: a batch whose stored indices had gaps is renumbered 0..n-1.

`batches` gains `session_day`, the UTC day its session started, in its primary key and its
nonce constraint. On PostgreSQL the new table is partitioned by RANGE (session_day), one
partition per day (`batches_dYYYYMMDD`, made here for every day that has sessions and for
today and tomorrow, later by the server: storage/partitions.py) plus `batches_default`.

Downgrade unpacks every batch back into `frames` rows (the 0009 schema). Both directions
convert one session at a time, so memory stays bounded by the largest session.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_P = tuple(f"p_{e}" for e in _EMOTIONS)
_S = tuple(f"s_{e}" for e in _EMOTIONS)
_POSE = ("head_yaw_deg", "head_pitch_deg", "face_box_size")
_DTYPE = np.dtype([("t", "<i8"), ("c", "<i8"), ("f", "u1"), ("p", "<f4", (7,)), ("o", "<f4", (3,)), ("s", "<f4", (7,))])
_NO_TIME = int(np.iinfo(np.int64).min)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH_COLUMNS = ("session_id", "seq", "session_day", "nonce", "digest", "frames", "accepted_at", "frame_data")
# Typed where SQLite needs it: these columns are written as text in SQLAlchemy's format.
_TYPES = {"accepted_at": sa.DateTime(timezone=True), "captured_at": sa.DateTime(timezone=True), "session_day": sa.Date()}
_FRAME_COLUMNS = ("session_id", "seq", "frame_index", "video_time_ms", "captured_at", "face_present",
                  *_P, *_POSE, *_S)


def _utc(value: datetime | str) -> datetime:
    # Through text(), SQLite hands back naive UTC text; PostgreSQL an aware timestamptz.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _micros(value: datetime | str | None) -> int:
    if value is None:
        return _NO_TIME
    delta = _utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _pack(frames: Sequence[sa.Row]) -> bytes:
    out = np.zeros(len(frames), _DTYPE)
    for i, f in enumerate(frames):
        m = f._mapping
        out[i] = (m["video_time_ms"], _micros(m["captured_at"]), bool(m["face_present"]),
                  [_nan(m[c]) for c in _P], [_nan(m[c]) for c in _POSE], [_nan(m[c]) for c in _S])
    return b"\x01" + out.tobytes()


def _unpack(session_id: str, seq: int, data: bytes) -> Iterator[dict]:
    if not data or data[0] != 1:
        raise ValueError(f"batch ({session_id}, {seq}): not a version-1 packed value")
    for i, r in enumerate(np.frombuffer(data, _DTYPE, offset=1)):
        row = {"session_id": session_id, "seq": seq, "frame_index": i, "video_time_ms": int(r["t"]),
               "captured_at": None if int(r["c"]) == _NO_TIME else _EPOCH + timedelta(microseconds=int(r["c"])),
               "face_present": bool(r["f"])}
        row.update({c: _none(v) for c, v in zip(_P, r["p"].tolist())})
        row.update({c: _none(v) for c, v in zip(_POSE, r["o"].tolist())})
        row.update({c: _none(v) for c, v in zip(_S, r["s"].tolist())})
        yield row


def _day_partition_sql(day: date) -> str:
    return (f"CREATE TABLE IF NOT EXISTS batches_d{day:%Y%m%d} PARTITION OF batches "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')")


def _session_ids(conn: sa.Connection, table: str) -> list[str]:
    return list(conn.execute(sa.text(f"SELECT DISTINCT session_id FROM {table} ORDER BY session_id")).scalars())


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.rename_table("batches", "batches_0009")
    if pg:
        # The old table's constraint names are global on PostgreSQL; the new table takes them.
        op.execute("ALTER INDEX batches_pkey RENAME TO batches_0009_pkey")
        op.execute("ALTER TABLE batches_0009 RENAME CONSTRAINT uq_batches_session_nonce TO uq_batches_0009_nonce")
        op.execute("ALTER TABLE batches_0009 RENAME CONSTRAINT fk_batches_session TO fk_batches_0009_session")
    seq_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "batches",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", seq_type, nullable=False, autoincrement=False),
        sa.Column("session_day", sa.Date(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frame_data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", "session_day", name="batches_pkey"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.session_id"], name="fk_batches_session", ondelete="CASCADE"),
        sa.UniqueConstraint("session_id", "nonce", "session_day", name="uq_batches_session_nonce"),
        postgresql_partition_by="RANGE (session_day)",
    )
    if pg:
        # Kept inline and uncompressed: the values are small (85 bytes a frame) float data that
        # pglz barely shrinks, and moving them out of line would add a TOAST row per batch.
        op.execute("ALTER TABLE batches ALTER COLUMN frame_data SET STORAGE MAIN")
        op.execute("CREATE TABLE batches_default PARTITION OF batches DEFAULT")
        today = datetime.now(UTC).date()
        days = set(conn.execute(sa.text(
            "SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM sessions")).scalars())
        for day in sorted(days | {today, today + timedelta(days=1)}):
            op.execute(_day_partition_sql(day))

    new = sa.table("batches", *(sa.column(c, _TYPES.get(c)) for c in _BATCH_COLUMNS))
    for session_id in _session_ids(conn, "batches_0009"):
        started = conn.execute(sa.text("SELECT started_at FROM sessions WHERE session_id = :s"),
                               {"s": session_id}).scalar_one()
        day = _utc(started).date()
        frames: dict[int, list[sa.Row]] = {}
        for f in conn.execute(sa.text(f"SELECT {', '.join(_FRAME_COLUMNS)} FROM frames WHERE session_id = :s "
                                      "ORDER BY seq, frame_index"), {"s": session_id}):
            frames.setdefault(int(f.seq), []).append(f)
        rows = []
        for b in conn.execute(sa.text("SELECT seq, nonce, digest, accepted_at FROM batches_0009 "
                                      "WHERE session_id = :s ORDER BY seq"), {"s": session_id}):
            mine = frames.get(int(b.seq), [])
            rows.append({"session_id": session_id, "seq": int(b.seq), "session_day": day, "nonce": b.nonce,
                         "digest": b.digest, "frames": len(mine), "accepted_at": _utc(b.accepted_at),
                         "frame_data": _pack(mine)})
        if rows:
            conn.execute(new.insert(), rows)
    op.drop_table("frames")
    op.drop_table("batches_0009")


def downgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.rename_table("batches", "batches_0010")
    if pg:
        op.execute("ALTER INDEX batches_pkey RENAME TO batches_0010_pkey")
        op.execute("ALTER TABLE batches_0010 RENAME CONSTRAINT uq_batches_session_nonce TO uq_batches_0010_nonce")
        op.execute("ALTER TABLE batches_0010 RENAME CONSTRAINT fk_batches_session TO fk_batches_0010_session")
    seq_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "batches",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", seq_type, nullable=False, autoincrement=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", name="batches_pkey"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.session_id"], name="fk_batches_session", ondelete="CASCADE"),
        sa.UniqueConstraint("session_id", "nonce", name="uq_batches_session_nonce"),
    )
    op.create_table(
        "frames",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", seq_type, nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("video_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("face_present", sa.Boolean(), nullable=False),
        *(sa.Column(c, sa.REAL(), nullable=True) for c in (*_P, *_POSE, *_S)),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.session_id"], name="fk_frames_session", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id", "seq"], ["batches.session_id", "batches.seq"],
                                name="fk_frames_batch", ondelete="CASCADE"),
        sa.UniqueConstraint("session_id", "seq", "frame_index", name="uq_frames_session_seq_index"),
    )
    old = sa.table("batches", *(sa.column(c, _TYPES.get(c))
                                for c in ("session_id", "seq", "nonce", "digest", "frames", "accepted_at")))
    frames = sa.table("frames", *(sa.column(c, _TYPES.get(c)) for c in _FRAME_COLUMNS))
    for session_id in _session_ids(conn, "batches_0010"):
        batches, rows = [], []
        for b in conn.execute(sa.text("SELECT seq, nonce, digest, frames, accepted_at, frame_data FROM batches_0010 "
                                      "WHERE session_id = :s ORDER BY seq"), {"s": session_id}):
            batches.append({"session_id": session_id, "seq": int(b.seq), "nonce": b.nonce, "digest": b.digest,
                            "frames": int(b.frames), "accepted_at": _utc(b.accepted_at)})
            rows.extend(_unpack(session_id, int(b.seq), bytes(b.frame_data)))
        conn.execute(old.insert(), batches)
        if rows:
            conn.execute(frames.insert(), rows)
    op.drop_table("batches_0010")  # on PostgreSQL its partitions go with it

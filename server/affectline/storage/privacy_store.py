"""The privacy lifecycle's storage side: subject access export, consent records for audits,
and retention per campaign on top of the global default.

Reads go by the schema the database actually has (reflected), so an export also covers tables
that later migrations add: every table with a `viewer_id` or `session_id` column contributes
the rows of the viewer and of their sessions. Key material is never exported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, MetaData, Table, delete, func, select, update

from affectline.storage import frame_pack, partitions
from affectline.storage.records import EMOTIONS, FrameRecord
from affectline.storage.tables import Video, ViewingSession, Viewer, to_utc

_videos = cast(Table, Video.__table__)  # type: ignore[attr-defined]
_sessions = cast(Table, ViewingSession.__table__)  # type: ignore[attr-defined]
_viewers = cast(Table, Viewer.__table__)  # type: ignore[attr-defined]

# Columns whose values are keys or key hashes: named in an export, never shown.
WITHHELD = frozenset({"token_sha256", "wrapped_key", "secret_sha256", "wrapped_secret"})
WITHHELD_NOTE = "(withheld: key material)"
CONSENT_FIELDS = ("session_id", "viewer_id", "video_id", "variant_id", "notice_version", "consented_at", "scopes",
                  "started_at", "ended_at", "end_reason")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _row(mapping: Any) -> dict[str, Any]:
    return {k: (WITHHELD_NOTE if k in WITHHELD else _jsonable(v)) for k, v in mapping.items()}


def _batch_row(mapping: Any) -> dict[str, Any]:
    """A batches row with its packed frames decoded (under "frames") instead of their bytes."""
    row = _row({k: v for k, v in mapping.items() if k != "frame_data"})
    frames = frame_pack.to_records(int(mapping["seq"]), frame_pack.unpack(mapping["frame_data"]))
    row["frames"] = [_frame(f) for f in frames]
    return row


def _frame(f: FrameRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": f.seq, "frame_index": f.index, "video_time_ms": f.video_time_ms,
                           "captured_at": _jsonable(f.captured_at), "face_present": f.face_present}
    for prefix, values in (("p", f.probs), ("s", f.smoothed)):
        out.update({f"{prefix}_{e}": None if values is None else _jsonable(v) for e, v in zip(EMOTIONS, values or EMOTIONS)})
    out.update(head_yaw_deg=f.head_yaw_deg, head_pitch_deg=f.head_pitch_deg, face_box_size=f.face_box_size)
    return out


class PrivacyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ------------------------------------------------------------ subject access

    def export_viewer(self, viewer_id: str) -> dict[str, Any] | None:
        """Everything stored about one viewer, as JSON-ready data; None for an unknown viewer.

        {"viewer": row, "sessions": [session row + "consent" + "tables": {table: rows}],
         "other": {table: rows with this viewer_id}}. Frames come in capture order."""
        meta = MetaData()
        with self._engine.connect() as conn:
            # A partitioned table's partitions reflect as tables of their own: read the parent only.
            skip = partitions.partition_tables(conn)
            meta.reflect(conn, only=lambda name, _: name not in skip)
            viewer = conn.execute(select(_viewers).where(_viewers.c.viewer_id == viewer_id)).mappings().one_or_none()
            if viewer is None:
                return None
            sessions = conn.execute(
                select(_sessions).where(_sessions.c.viewer_id == viewer_id).order_by(_sessions.c.started_at)
            ).mappings().all()
            per_session = [t for t in meta.sorted_tables if "session_id" in t.c and t.name != "sessions"]
            out_sessions = []
            for s in sessions:
                entry = _row(s)
                entry["consent"] = {
                    "notice_version": s["consent_notice_version"],
                    "consented_at": _jsonable(s["consent_at"]),
                    "scopes": json.loads(s["consent_scopes"] or "[]"),
                }
                tables: dict[str, list[dict[str, Any]]] = {}
                for t in per_session:
                    order = [t.c[c] for c in ("seq", "frame_index", "second", "pass_index") if c in t.c]
                    rows = conn.execute(select(t).where(t.c.session_id == s["session_id"]).order_by(*order)).mappings()
                    tables[t.name] = [(_batch_row if t.name == "batches" else _row)(r) for r in rows]
                if "batches" in tables:  # the packed frames, readable, one entry per frame
                    tables["frames"] = [f for b in tables["batches"] for f in b.pop("frames")]
                entry["tables"] = tables
                out_sessions.append(entry)
            other = {
                t.name: [_row(r) for r in conn.execute(select(t).where(t.c.viewer_id == viewer_id)).mappings()]
                for t in meta.sorted_tables
                if "viewer_id" in t.c and t.name not in ("viewers", "sessions")
            }
        return {
            "viewer": _row(viewer),
            "sessions": out_sessions,
            "other": {k: v for k, v in other.items() if v},
            "exported_at": _jsonable(datetime.now(UTC)),
            "withheld": sorted(WITHHELD & {c for t in meta.sorted_tables for c in t.c.keys()}),
        }

    # ------------------------------------------------------------ consent records

    def consent_records(self, since: datetime | None = None, video_id: str | None = None) -> Iterator[dict[str, Any]]:
        """One record per session (oldest first): who consented to what, when, and the session's span."""
        s = _sessions.c
        query = select(s.session_id, s.viewer_id, s.video_id, s.variant_id, s.consent_notice_version, s.consent_at,
                       s.consent_scopes, s.started_at, s.ended_at, s.end_reason).order_by(s.started_at, s.session_id)
        if since is not None:
            query = query.where(s.started_at >= to_utc(since))
        if video_id is not None:
            query = query.where(s.video_id == video_id)
        with self._engine.connect() as conn:
            for r in conn.execute(query):
                yield {
                    "session_id": r.session_id, "viewer_id": r.viewer_id, "video_id": r.video_id,
                    "variant_id": r.variant_id, "notice_version": r.consent_notice_version,
                    "consented_at": _jsonable(r.consent_at), "scopes": json.loads(r.consent_scopes or "[]"),
                    "started_at": _jsonable(r.started_at), "ended_at": _jsonable(r.ended_at),
                    "end_reason": r.end_reason,
                }

    # ------------------------------------------------------------ retention

    def set_retention(self, video_id: str, days: int | None) -> None:
        """Days the video's sessions are kept (None: the global default). KeyError: unknown video."""
        if days is not None and days <= 0:
            raise ValueError("retention days must be > 0 (or unset for the global default)")
        with self._engine.begin() as conn:
            changed = conn.execute(update(_videos).where(_videos.c.video_id == video_id).values(retention_days=days)).rowcount
        if not changed:
            raise KeyError(video_id)

    def retention_overrides(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(_videos.c.video_id, _videos.c.retention_days)
                                .where(_videos.c.retention_days.is_not(None))).all()
        return {r.video_id: int(r.retention_days) for r in rows}

    def purge_expired(self, now: datetime, default_days: int) -> int:
        """Retention: deletes each session (with its frames, batches and rollups, by ON DELETE
        CASCADE) older than its video's retention_days, or `default_days` where the video has
        none (0: those are kept); then viewers left without sessions. Returns sessions deleted.

        On PostgreSQL, the batches of whole days past the default go first, by dropping their
        partitions (in a transaction of their own: a drop locks `batches` until it commits),
        unless a video with a longer retention has sessions that day."""
        now = to_utc(now)
        overrides = self.retention_overrides()
        if default_days > 0 and self._engine.dialect.name == "postgresql":
            longer = [video for video, days in overrides.items() if days > default_days]
            with self._engine.begin() as conn:
                cutoff = (now - timedelta(days=default_days)).date()
                partitions.drop(conn, partitions.droppable_days(conn, cutoff, longer))
        purged = 0
        with self._engine.begin() as conn:
            for video_id, days in overrides.items():
                purged += int(conn.execute(delete(_sessions).where(
                    _sessions.c.video_id == video_id, _sessions.c.started_at < now - timedelta(days=days))).rowcount or 0)
            if default_days > 0:
                where = [_sessions.c.started_at < now - timedelta(days=default_days)]
                if overrides:
                    where.append(_sessions.c.video_id.not_in(list(overrides)))
                purged += int(conn.execute(delete(_sessions).where(*where)).rowcount or 0)
            has_sessions = select(_sessions.c.viewer_id).where(_sessions.c.viewer_id == _viewers.c.viewer_id).exists()
            conn.execute(delete(_viewers).where(~has_sessions))
        return purged

    def count_rows(self, table: str, **where: Any) -> int:
        meta = MetaData()
        t = Table(table, meta, autoload_with=self._engine)
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(
                *(t.c[k] == v for k, v in where.items()))).scalar_one())

"""Synchronous, thread-safe storage of sessions and their per-frame emotion timelines.

Every method runs in its own short transaction on a pooled connection, so the services can
call it from any thread (asyncio.to_thread). Only records.py dataclasses go in and out.
Writes use INSERT .. ON CONFLICT, which SQLite and PostgreSQL both support, so an upsert or
an idempotent retry is one race-free statement on either backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

import numpy as np

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from affectline.analytics.rollup import SeekState, rollup_session, rollup_sessions
from affectline.storage import frame_pack, partitions, pg_stage, rollup_ingest
from affectline.storage.database import make_engine, upgrade
from affectline.storage.records import (
    EMOTIONS,
    BatchRecord,
    BucketRecord,
    ConsentInfo,
    FrameRecord,
    SessionRecord,
    SessionSummaryRecord,
    ViewerInfo,
)
from affectline.storage.tables import (
    CropBatchLog,
    SecondRollupRow,
    Variant,
    Video,
    Viewer,
    UTCDateTime,
    ViewingSession,
    to_utc,
)

_videos = cast(Table, Video.__table__)  # type: ignore[attr-defined]
_variants = cast(Table, Variant.__table__)  # type: ignore[attr-defined]
_viewers = cast(Table, Viewer.__table__)  # type: ignore[attr-defined]
_sessions = cast(Table, ViewingSession.__table__)  # type: ignore[attr-defined]
_batches = cast(Table, CropBatchLog.__table__)  # type: ignore[attr-defined]
_rollups = cast(Table, SecondRollupRow.__table__)  # type: ignore[attr-defined]

# The consent scope without which no demographics are stored.
DEMOGRAPHICS_SCOPE = "demographics"

# The hot path (every accepted crop batch) as plain SQL: building, compiling and binding
# Core statements per batch cost more Python time than the database's own work.
_BATCH_COLUMNS = ("session_id", "seq", "session_day", "nonce", "digest", "frames", "accepted_at", "frame_data")
_SQLITE_INSERT_BATCH = (
    f"INSERT INTO {_batches.name} ({', '.join(_BATCH_COLUMNS)}) VALUES ({', '.join('?' * len(_BATCH_COLUMNS))}) "
    "ON CONFLICT (session_id, seq, session_day) DO NOTHING RETURNING seq"
)
# PostgreSQL: a group's batches go in by binary COPY into a per-connection staging table, then
# one INSERT .. ON CONFLICT DO NOTHING (COPY itself cannot skip the rows of a client retry).
_PG_STAGE = "batch_stage"
_PG_CREATE_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGE} "
                    f"(LIKE {_batches.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_PG_COPY_STAGE = f"COPY {_PG_STAGE} ({', '.join(_BATCH_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_TYPES = ("text", "int8", "date", "bytea", "bytea", "int4", "timestamptz", "bytea")
_PG_CLAIM = (
    f"INSERT INTO {_batches.name} ({', '.join(_BATCH_COLUMNS)}) SELECT {', '.join(_BATCH_COLUMNS)} FROM {_PG_STAGE} "
    "ON CONFLICT (session_id, seq, session_day) DO NOTHING RETURNING session_id, seq"
)
# Batches read per query where a reader pages through a session.
_READ_CHUNK = 500


class TooManyOpenSessions(Exception):
    """create_session: the viewer already has the most open sessions allowed."""

    def __init__(self, viewer_id: str, open_sessions: int) -> None:
        super().__init__(f"viewer {viewer_id!r} has {open_sessions} open sessions")
        self.open_sessions = open_sessions


@contextmanager
def open_store(url: str, *, migrate: bool = False, rollups: bool = True) -> Iterator[TimelineStore]:
    """A store on an engine of its own, disposed on exit: for commands and tools, not the server."""
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
        yield TimelineStore(engine, rollups=rollups)
    finally:
        engine.dispose()


class TimelineStore:
    def __init__(self, engine: Engine, *, rollups: bool = True) -> None:
        """`rollups`: keep the per session-second rollups current as batches land (AFFECTLINE_ROLLUPS)."""
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self.rollups = rollups
        self.engine = engine  # for the read-only stores built on the same engine (rollup_store)
        # The timestamp columns' own conversion (UTC check, SQLite's text format), applied by
        # hand where the plain-SQL path bypasses Core.
        bind = UTCDateTime().bind_processor(engine.dialect)
        self._bind_time: Callable[[datetime | None], Any] = bind or (lambda v: v)
        self.partitions = partitions.DayPartitions(engine)

    # ---------------------------------------------------------------- videos and sessions

    def ensure_video(self, video_id: str, variant_id: str, title: str = "") -> None:
        """Create the video and variant if missing; a non-empty title replaces the old one."""
        with self._engine.begin() as conn:
            self._ensure_video(conn, video_id, variant_id, title)

    def set_video_media(self, video_id: str, title: str, media_path: str, mime_type: str) -> None:
        """Create or update a playable video (its default variant too)."""
        with self._engine.begin() as conn:
            self._ensure_video(conn, video_id, "", title)
            conn.execute(
                update(_videos).where(_videos.c.video_id == video_id).values(media_path=media_path, mime_type=mime_type)
            )

    def list_videos(self) -> list[dict[str, Any]]:
        """Every video with its title, media file and variant ids, oldest first."""
        with self._engine.connect() as conn:
            videos = conn.execute(select(_videos).order_by(_videos.c.created_at, _videos.c.video_id)).mappings().all()
            variants = conn.execute(select(_variants.c.video_id, _variants.c.variant_id)).all()
        out = [dict(v) for v in videos]
        for v in out:
            v["variants"] = sorted(r.variant_id for r in variants if r.video_id == v["video_id"])
        return out

    def get_video(self, video_id: str) -> dict[str, Any] | None:
        """One video with its title, media file and variant ids (two lookups by key), or None."""
        with self._engine.connect() as conn:
            video = conn.execute(select(_videos).where(_videos.c.video_id == video_id)).mappings().one_or_none()
            if video is None:
                return None
            variants = conn.execute(
                select(_variants.c.variant_id).where(_variants.c.video_id == video_id).order_by(_variants.c.variant_id)
            ).scalars().all()
        return {**video, "variants": list(variants)}

    def create_session(self, record: SessionRecord, max_open_per_viewer: int | None = None) -> None:
        """Insert a new session (IntegrityError if its id exists), creating its video and
        variant if missing, and its viewer. A known viewer's demographics change only where
        this record brings non-empty values under the demographics consent scope: a session
        without them never wipes what is known.

        With `max_open_per_viewer`, raises TooManyOpenSessions (writing nothing) when the viewer
        already has that many sessions neither ended nor expired at record.started_at. The
        viewer row is written first, so concurrent starts of one viewer queue on its row lock
        and the count cannot be raced."""
        viewer = record.viewer
        consented = DEMOGRAPHICS_SCOPE in record.consent.scopes
        self.partitions.ensure(partitions.session_day(record.started_at))
        given = {k: (getattr(viewer, k) if consented else "") for k in ("age_band", "gender", "region")}
        with self._engine.begin() as conn:
            self._ensure_video(conn, record.video_id, record.variant_id, "")
            upsert_viewer = self._insert(_viewers).values(viewer_id=viewer.viewer_id, created_at=_now(), **given)
            excluded = upsert_viewer.excluded
            conn.execute(
                upsert_viewer.on_conflict_do_update(
                    index_elements=[_viewers.c.viewer_id],
                    # Empty means "not given": keep the known value.
                    set_={k: func.coalesce(func.nullif(excluded[k], ""), _viewers.c[k]) for k in given},
                )
            )
            if max_open_per_viewer is not None:
                open_sessions = int(conn.execute(
                    select(func.count()).select_from(_sessions).where(
                        _sessions.c.viewer_id == viewer.viewer_id,
                        _sessions.c.ended_at.is_(None),
                        _sessions.c.expires_at > record.started_at,
                    )
                ).scalar_one())
                if open_sessions >= max_open_per_viewer:
                    raise TooManyOpenSessions(viewer.viewer_id, open_sessions)
            conn.execute(
                insert(_sessions).values(
                    session_id=record.session_id,
                    video_id=record.video_id,
                    variant_id=record.variant_id,
                    viewer_id=viewer.viewer_id,
                    consent_notice_version=record.consent.notice_version,
                    consent_at=record.consent.consented_at,
                    consent_scopes=json.dumps(list(record.consent.scopes)),
                    capture_fps=record.capture_fps,
                    model=record.model,
                    started_at=record.started_at,
                    expires_at=record.expires_at,
                    ended_at=record.ended_at,
                    end_reason=record.end_reason,
                    token_sha256=record.token_sha256,
                    wrapped_key=record.wrapped_key,
                    # Only when restricted: the column's default "" means all seven.
                    **({"allowed_emotions": allowed} if (allowed := _allowed_text(record.consent.allowed_emotions)) else {}),
                    # With rollups on, a new session starts from an empty seek state, so even its
                    # first batch rolls up incrementally (NULL would mean "recompute from frames").
                    **({"rollup_state": rollup_ingest.encode_state(SeekState(), -1)} if self.rollups else {}),
                )
            )

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._engine.connect() as conn:
            return self._get_session(conn, session_id)

    def end_session(self, session_id: str, reason: str, ended_at: datetime) -> SessionRecord:
        """Mark the session ended; a session already ended keeps its first end time and
        reason. Raises KeyError for an unknown session."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_sessions)
                .where(_sessions.c.session_id == session_id, _sessions.c.ended_at.is_(None))
                .values(ended_at=ended_at, end_reason=reason)
            )
            record = self._get_session(conn, session_id)
        if record is None:
            raise KeyError(session_id)
        return record

    # ---------------------------------------------------------------- retention and erasure

    def erase_viewer(self, viewer_id: str) -> int:
        """Deletes a viewer and everything recorded about them (sessions, batches, frames, by
        ON DELETE CASCADE). Returns the number of sessions erased; 0 for an unknown viewer."""
        with self._engine.begin() as conn:
            erased = conn.execute(delete(_sessions).where(_sessions.c.viewer_id == viewer_id)).rowcount
            conn.execute(delete(_viewers).where(_viewers.c.viewer_id == viewer_id))
        return int(erased or 0)

    def purge_sessions_started_before(self, cutoff: datetime) -> int:
        """Retention: deletes sessions (with their frames) that started before `cutoff`, and
        viewers left without sessions. Returns the number of sessions deleted. On PostgreSQL
        the batches of whole days before the cutoff's go by dropping their partitions."""
        if not self._sqlite:  # its own transaction: a drop locks `batches` until it commits
            with self._engine.begin() as conn:
                partitions.drop(conn, partitions.droppable_days(conn, to_utc(cutoff).date()))
        with self._engine.begin() as conn:
            purged = conn.execute(delete(_sessions).where(_sessions.c.started_at < to_utc(cutoff))).rowcount
            orphaned = select(_sessions.c.viewer_id).where(_sessions.c.viewer_id == _viewers.c.viewer_id).exists()
            conn.execute(delete(_viewers).where(~orphaned))
        return int(purged or 0)

    def count_sessions(self, video_id: str, variant_id: str | None = None) -> int:
        query = select(func.count()).select_from(_sessions).where(_sessions.c.video_id == video_id)
        if variant_id is not None:
            query = query.where(_sessions.c.variant_id == variant_id)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def active_session_count(self, now: datetime) -> int:
        """Sessions neither ended nor expired at `now`."""
        query = (
            select(func.count())
            .select_from(_sessions)
            .where(_sessions.c.ended_at.is_(None), _sessions.c.expires_at > now)
        )
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ---------------------------------------------------------------- batches and frames

    def append_batch(self, session_id: str, batch: BatchRecord) -> bool:
        """Store the batch and all its frames atomically.

        Returns False, writing nothing, when (session_id, seq) is already stored, so a client
        retry is harmless (compare digests with get_batch to tell a retry from a replay).
        Raises sqlalchemy.exc.IntegrityError, writing nothing, on any constraint violation
        (unknown session, reused nonce, duplicate frame index) and ValueError on a malformed
        frame.
        """
        return self.append_batches([(session_id, batch)])[0]

    def append_batches(self, items: Sequence[tuple[str, BatchRecord]]) -> list[bool]:
        """Stores several sessions' batches in ONE transaction (group commit): all or nothing.

        Per item, like append_batch: False when that (session, seq) was already stored. Any
        error rolls back the whole group; the caller then retries the items one by one so
        only the faulty batch fails.
        """
        session_ids = sorted({session_id for session_id, _ in items})
        with self._engine.begin() as conn:
            if self._sqlite:
                # Take SQLite's write lock before reading (under WAL a read could not upgrade
                # to a write if another writer committed in between).
                conn.execute(update(_sessions).where(_sessions.c.session_id.in_(session_ids))
                             .values(rollup_state=_sessions.c.rollup_state))
            # PostgreSQL: the sessions are locked here, in id order, so concurrent groups with
            # the same session roll up one after the other.
            sessions = self._ingest_state(conn, session_ids)
            accepted_at = self._bind_time(_now()) if self._sqlite else _now()
            rows = []
            for session_id, batch in items:
                state = sessions.get(session_id)
                # An unknown session: packed without withholding; its row fails the foreign key.
                withheld, day = (state.withheld, state.day) if state else ((), partitions.session_day(_now()))
                data = frame_pack.pack(batch.seq, batch.frames, withheld)
                rows.append((session_id, batch.seq, day, batch.nonce, batch.digest, len(batch.frames), accepted_at, data))
            claimed_all = self._claim_batches(conn, rows)
            if self.rollups:
                self._roll_up(conn, [row for row, ok in zip(rows, claimed_all) if ok], sessions)
        return claimed_all

    def _ingest_state(self, conn: Connection, session_ids: Sequence[str]) -> dict[str, _IngestState]:
        query = select(_sessions.c.session_id, _sessions.c.allowed_emotions, _sessions.c.rollup_state,
                       _sessions.c.started_at).where(_sessions.c.session_id.in_(session_ids)).order_by(_sessions.c.session_id)
        if not self._sqlite and self.rollups:
            query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE: no conflict with FK checks
        out = {}
        for r in conn.execute(query):
            allowed = rollup_ingest.parse_allowed(r.allowed_emotions)
            withheld = () if allowed is None else tuple(i for i, e in enumerate(EMOTIONS) if e not in allowed)
            out[r.session_id] = _IngestState(allowed, withheld, r.rollup_state, partitions.session_day(r.started_at))
        return out

    def _claim_batches(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
        """Inserts the batches rows (in _BATCH_COLUMNS order); per row, False when its
        (session_id, seq) was already stored (or came earlier in `rows`)."""
        if self._sqlite:
            return [conn.exec_driver_sql(_SQLITE_INSERT_BATCH, row).first() is not None for row in rows]
        with pg_stage.staging_cursor(conn, _PG_CREATE_STAGE) as cursor:
            pg_stage.copy_rows(cursor, _PG_COPY_STAGE, _PG_COPY_TYPES, rows)
            inserted = {(sid, int(seq)) for sid, seq in cursor.execute(_PG_CLAIM).fetchall()}
        claimed = []
        for row in rows:
            key = (row[0], int(row[1]))
            claimed.append(key in inserted)
            inserted.discard(key)  # a second copy of the same batch in one group is a retry
        return claimed

    def _roll_up(self, conn: Connection, new: Sequence[tuple[Any, ...]], sessions: Mapping[str, _IngestState]) -> None:
        """Adds the new batches' frames to the rollups and advances each session's seek state.
        `new`: the batches rows just stored (_BATCH_COLUMNS order)."""
        by_session: dict[str, list[tuple[Any, ...]]] = {}
        for row in new:
            by_session.setdefault(row[0], []).append(row)
        rows: list[Any] = []
        states: list[tuple[str, str]] = []
        # The usual case: every session's new frames rolled up together, decoded at once.
        names: list[str] = []
        values: list[Any] = []
        seqs: list[int] = []
        bounds = [0]
        allowed_of: list[Any] = []
        seek_states: list[SeekState] = []
        last_seqs: list[int] = []
        for session_id, batches in by_session.items():
            state = sessions.get(session_id)
            allowed, state_text = (state.allowed, state.rollup_state) if state else (None, None)
            resumed = rollup_ingest.decode_state(state_text) if state_text else None
            batches = sorted(batches, key=lambda b: b[1])
            if resumed is None or int(batches[0][1]) <= resumed[1]:
                # First rollup of the session, or a batch arriving after a later one: the
                # pass assignment depends on (seq, index) order, so roll the session up anew.
                session_rows, seek, last_seq = self._roll_up_from_frames(conn, session_id, allowed)
                rows += session_rows
                states.append((session_id, rollup_ingest.encode_state(seek, last_seq)))
                continue
            names.append(session_id)
            allowed_of.append(allowed)
            seek_states.append(resumed[0])
            last_seqs.append(int(batches[-1][1]))
            for b in batches:
                seqs.append(int(b[1]))
                values.append(b[7])
            bounds.append(bounds[-1] + sum(int(b[5]) for b in batches))
        if names:
            arrays = rollup_ingest.packed_frame_arrays(seqs, values)
            group_rows, group_states = rollup_sessions(names, np.asarray(bounds), arrays, allowed_of, seek_states)
            rows += group_rows
            states += [(sid, rollup_ingest.encode_state(seek, last_seq))
                       for sid, seek, last_seq in zip(names, group_states, last_seqs)]
        rollup_ingest.write_rollups(conn, rows, states, self._sqlite)

    def _roll_up_from_frames(self, conn: Connection, session_id: str, allowed: tuple[str, ...] | None) -> tuple[Any, ...]:
        rollup_ingest.delete_rollups(conn, _rollups, session_id)
        seqs, values = self._packed(conn, session_id)
        arrays = rollup_ingest.packed_frame_arrays(seqs, values)
        rows, state = rollup_session(session_id, arrays, allowed=allowed)
        return rows, state, max(seqs, default=-1)

    def rebuild_rollups(self, session_id: str) -> int:
        """Recomputes one session's rollups and seek state from its frames; returns the rows written."""
        with self._engine.begin() as conn:
            sessions = self._ingest_state(conn, [session_id])
            if session_id not in sessions:
                return 0
            rows, state, last_seq = self._roll_up_from_frames(conn, session_id, sessions[session_id].allowed)
            rollup_ingest.write_rollups(conn, rows, [(session_id, rollup_ingest.encode_state(state, last_seq))],
                                        self._sqlite)
        return len(rows)

    def session_ids(self, video_id: str | None = None) -> list[str]:
        """Every session id (of one video), in id order."""
        query = select(_sessions.c.session_id).order_by(_sessions.c.session_id)
        if video_id is not None:
            query = query.where(_sessions.c.video_id == video_id)
        with self._engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def get_batch(self, session_id: str, seq: int) -> BatchRecord | None:
        with self._engine.connect() as conn:
            batch = conn.execute(
                select(_batches.c.nonce, _batches.c.digest, _batches.c.frame_data).where(
                    _batches.c.session_id == session_id, _batches.c.seq == seq
                )
            ).one_or_none()
        if batch is None:
            return None
        return BatchRecord(
            seq=seq,
            nonce=bytes(batch.nonce),
            digest=bytes(batch.digest),
            frames=tuple(frame_pack.to_records(seq, frame_pack.unpack(batch.frame_data))),
        )

    def nonce_used(self, session_id: str, nonce: bytes) -> bool:
        query = select(_batches.c.seq).where(
            _batches.c.session_id == session_id, _batches.c.nonce == nonce
        )
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def _packed(self, conn: Connection, session_id: str) -> tuple[list[int], list[Any]]:
        """A session's batches' seqs and packed frames, in seq order."""
        rows = conn.execute(select(_batches.c.seq, _batches.c.frame_data)
                            .where(_batches.c.session_id == session_id).order_by(_batches.c.seq)).all()
        return [int(r.seq) for r in rows], [r.frame_data for r in rows]

    def _batch_chunks(self, session_id: str, *, after_seq: int | None = None,
                      descending: bool = False) -> Iterator[list[Row[Any]]]:
        """A session's (seq, frame_data) rows in seq order (or reverse), from `after_seq` on
        (inclusive); each chunk (8 rows, doubling up to _READ_CHUNK) is its own short query."""
        seq = _batches.c.seq
        bound = after_seq
        size = 8  # doubling: a page of frames often needs only a few batches
        while True:
            query = select(seq, _batches.c.frame_data).where(_batches.c.session_id == session_id)
            if bound is not None:
                query = query.where(seq < bound if descending else seq >= bound)
            query = query.order_by(seq.desc() if descending else seq).limit(size)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield rows
            if len(rows) < size:
                return
            size = min(2 * size, _READ_CHUNK)
            bound = int(rows[-1].seq) if descending else int(rows[-1].seq) + 1

    def session_frames_page(
        self, session_id: str, after: tuple[int, int] | None, limit: int
    ) -> list[FrameRecord]:
        """At most `limit` frames in capture order (seq, index) that come after the frame
        `after` (its (seq, index); None: from the start). Keyset paging on the primary key."""
        out: list[FrameRecord] = []
        for rows in self._batch_chunks(session_id, after_seq=None if after is None else after[0]):
            for row in rows:
                seq = int(row.seq)
                frames = frame_pack.unpack(row.frame_data)
                start = after[1] + 1 if after is not None and seq == after[0] else 0
                out += frame_pack.to_records(seq, frames[start:start + limit - len(out)], start)
                if len(out) >= limit:
                    return out
        return out

    def session_frames(self, session_id: str) -> list[FrameRecord]:
        out: list[FrameRecord] = []
        for rows in self._batch_chunks(session_id):
            for row in rows:
                out += frame_pack.to_records(int(row.seq), frame_pack.unpack(row.frame_data))
        return out

    def last_face_frame(self, session_id: str) -> FrameRecord | None:
        """The latest stored frame with a face (by seq, index): where smoothing resumes after a restart."""
        for rows in self._batch_chunks(session_id, descending=True):
            for row in rows:
                frames = frame_pack.unpack(row.frame_data)
                faces = np.flatnonzero(frames["face_present"])
                if len(faces):
                    i = int(faces[-1])
                    return frame_pack.to_records(int(row.seq), frames[i:i + 1], i)[0]
        return None

    def max_seq(self, session_id: str) -> int | None:
        """The highest accepted batch seq of a session, or None before its first batch."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(func.max(_batches.c.seq)).where(_batches.c.session_id == session_id)
            ).scalar_one()

    def count_frames(self, session_id: str | None = None) -> int:
        query = select(func.coalesce(func.sum(_batches.c.frames), 0))
        if session_id is not None:
            query = query.where(_batches.c.session_id == session_id)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ---------------------------------------------------------------- aggregates (in SQL)

    def session_summary(self, session_id: str) -> SessionSummaryRecord:
        """Frame counts, mean probabilities over frames with a face, video time range.
        An unknown session or one without frames gives zero counts."""
        with self._engine.connect() as conn:
            _, values = self._packed(conn, session_id)
        frames, _ = frame_pack.unpack_many(values)
        face = frames["face_present"].astype(bool)
        times = frames["video_time_ms"]
        return SessionSummaryRecord(
            session_id=session_id,
            frames_total=len(frames),
            frames_with_face=int(face.sum()),
            mean_probs=_nan_means(frames["probs"][face]),
            first_video_time_ms=int(times.min()) if len(times) else None,
            last_video_time_ms=int(times.max()) if len(times) else None,
        )

    def video_timeline(
        self, video_id: str, variant_id: str | None, bucket_ms: int
    ) -> list[BucketRecord]:
        """Frames of the video's sessions (one variant, or all when None) grouped into
        buckets [start_ms, start_ms + bucket_ms), ordered by start_ms.

        Decoded and summed one session at a time, so memory stays bounded by a session."""
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
        where = [_sessions.c.video_id == video_id]
        if variant_id is not None:
            where.append(_sessions.c.variant_id == variant_id)
        query = (select(_batches.c.session_id, _batches.c.frame_data)
                 .join(_sessions, _sessions.c.session_id == _batches.c.session_id)
                 .where(*where).order_by(_batches.c.session_id, _batches.c.seq))
        totals = _BucketTotals(bucket_ms)
        with self._engine.connect() as conn:
            current, values = None, []
            for row in conn.execution_options(yield_per=_READ_CHUNK).execute(query):
                if row.session_id != current and values:
                    totals.add_session(frame_pack.unpack_many(values)[0])
                    values = []
                current = row.session_id
                values.append(row.frame_data)
            if values:
                totals.add_session(frame_pack.unpack_many(values)[0])
        return totals.records()

    # ---------------------------------------------------------------- internals

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _ensure_video(self, conn: Connection, video_id: str, variant_id: str, title: str) -> None:
        upsert_video = self._insert(_videos).values(
            video_id=video_id, title=title, created_at=_now()
        )
        conn.execute(
            upsert_video.on_conflict_do_update(
                index_elements=[_videos.c.video_id],
                set_={"title": upsert_video.excluded.title},
                where=upsert_video.excluded.title != "",
            )
        )
        conn.execute(
            self._insert(_variants)
            .values(video_id=video_id, variant_id=variant_id)
            .on_conflict_do_nothing()
        )

    def _get_session(self, conn: Connection, session_id: str) -> SessionRecord | None:
        row = conn.execute(
            select(_sessions, _viewers.c.age_band, _viewers.c.gender, _viewers.c.region)
            .join(_viewers, _viewers.c.viewer_id == _sessions.c.viewer_id)
            .where(_sessions.c.session_id == session_id)
        ).one_or_none()
        return None if row is None else _session_record(row)

    def delete_session(self, session_id: str) -> bool:
        """Deletes one session with everything stored for it (batches, frames, rollups, by ON
        DELETE CASCADE), and its viewer when no other session of that viewer is left: what an
        analysis that failed after a partial store must leave behind, nothing. Returns False
        for an unknown session."""
        with self._engine.begin() as conn:
            viewer_id = conn.execute(
                select(_sessions.c.viewer_id).where(_sessions.c.session_id == session_id)).scalar_one_or_none()
            if viewer_id is None:
                return False
            conn.execute(delete(_sessions).where(_sessions.c.session_id == session_id))
            others = select(_sessions.c.session_id).where(_sessions.c.viewer_id == viewer_id).exists()
            conn.execute(delete(_viewers).where(_viewers.c.viewer_id == viewer_id, ~others))
        return True


# -------------------------------------------------------------------- row <-> record


def _now() -> datetime:
    return datetime.now(UTC)


def _opt_float(value: float | None) -> float | None:
    # float() also turns numpy scalars from the model into values every driver can bind.
    return None if value is None else float(value)


def _allowed_text(allowed: Sequence[str]) -> str:
    """sessions.allowed_emotions: "" for all seven, else a JSON list in EMOTIONS order."""
    unknown = set(allowed) - set(EMOTIONS)
    if unknown:
        raise ValueError(f"unknown emotions: {sorted(unknown)}")
    if not allowed or set(allowed) == set(EMOTIONS):
        return ""
    return json.dumps([e for e in EMOTIONS if e in set(allowed)])


def _session_record(row: Row[Any]) -> SessionRecord:
    m = row._mapping
    return SessionRecord(
        session_id=m["session_id"],
        video_id=m["video_id"],
        variant_id=m["variant_id"],
        viewer=ViewerInfo(
            viewer_id=m["viewer_id"], age_band=m["age_band"], gender=m["gender"], region=m["region"]
        ),
        consent=ConsentInfo(
            notice_version=m["consent_notice_version"],
            consented_at=m["consent_at"],
            scopes=tuple(json.loads(m["consent_scopes"])),
            allowed_emotions=rollup_ingest.parse_allowed(m["allowed_emotions"]) or (),
        ),
        capture_fps=float(m["capture_fps"]),
        model=m["model"],
        started_at=m["started_at"],
        expires_at=m["expires_at"],
        token_sha256=bytes(m["token_sha256"]),
        wrapped_key=bytes(m["wrapped_key"]),
        ended_at=m["ended_at"],
        end_reason=m["end_reason"],
    )


@dataclass(frozen=True, slots=True)
class _IngestState:
    """What storing a session's batches needs to know about it, read in the batches' transaction."""

    allowed: tuple[str, ...] | None  # None: all seven emotions
    withheld: tuple[int, ...]  # EMOTIONS positions stored as NaN
    rollup_state: str | None
    day: date  # the partition key


def _nan_means(probs: np.ndarray) -> tuple[float, ...] | None:
    """Per-emotion means over rows (NaN, a withheld emotion, left out); None without rows."""
    if not len(probs):
        return None
    counts = (~np.isnan(probs)).sum(axis=0)
    sums = np.nansum(probs.astype(np.float64), axis=0)
    return tuple(float(s / n) if n else float("nan") for s, n in zip(sums, counts))


class _BucketTotals:
    """video_timeline's per-bucket sums, added one session at a time."""

    def __init__(self, bucket_ms: int) -> None:
        self._bucket_ms = bucket_ms
        self._frames: dict[int, int] = {}
        self._faces: dict[int, int] = {}
        self._viewers: dict[int, int] = {}
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, np.ndarray] = {}

    def add_session(self, frames: np.ndarray) -> None:
        if not len(frames):
            return
        # Floor division: a negative time falls in the bucket below it.
        start = (frames["video_time_ms"] // self._bucket_ms) * self._bucket_ms
        face = frames["face_present"].astype(bool)
        probs = frames["probs"].astype(np.float64)
        known = ~np.isnan(probs) & face[:, None]
        values = np.where(known, probs, 0.0)
        buckets, where = np.unique(start, return_inverse=True)
        n = len(buckets)
        frames_per = np.bincount(where, minlength=n)
        faces_per = np.bincount(where, weights=face, minlength=n)
        sums = np.stack([np.bincount(where, weights=values[:, k], minlength=n) for k in range(len(EMOTIONS))], 1)
        counts = np.stack([np.bincount(where, weights=known[:, k], minlength=n) for k in range(len(EMOTIONS))], 1)
        for i, b in enumerate(buckets.tolist()):
            self._frames[b] = self._frames.get(b, 0) + int(frames_per[i])
            self._faces[b] = self._faces.get(b, 0) + int(faces_per[i])
            self._viewers[b] = self._viewers.get(b, 0) + 1
            self._sums[b] = self._sums.get(b, 0.0) + sums[i]
            self._counts[b] = self._counts.get(b, 0.0) + counts[i]

    def records(self) -> list[BucketRecord]:
        out = []
        for b in sorted(self._frames):
            faces = self._faces[b]
            sums, counts = self._sums[b], self._counts[b]
            mean = tuple(float(s / c) if c else float("nan") for s, c in zip(sums, counts)) if faces else None
            out.append(BucketRecord(start_ms=b, mean_probs=mean, viewers=self._viewers[b],
                                    frames=self._frames[b], frames_with_face=faces))
        return out

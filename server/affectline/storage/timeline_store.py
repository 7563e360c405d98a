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
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from affectline.analytics.definitions import frame_arrays
from affectline.analytics.rollup import SeekState, rollup_group, rollup_session
from affectline.storage import rollup_ingest
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
    PROB_COLUMNS,
    SMOOTHED_COLUMNS,
    CropBatchLog,
    FrameRow,
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
_frames = cast(Table, FrameRow.__table__)  # type: ignore[attr-defined]
_rollups = cast(Table, SecondRollupRow.__table__)  # type: ignore[attr-defined]

# Every frames column but the generated id, in table order (the COPY and INSERT column list).
_FRAME_COLUMNS: tuple[str, ...] = tuple(c.name for c in _frames.columns if c.name != "id")
_COPY_FRAMES = f"COPY frames ({', '.join(_FRAME_COLUMNS)}) FROM STDIN"
_CAPTURED_AT = _FRAME_COLUMNS.index("captured_at")
# Where each emotion's raw and smoothed probability sit in a frames row (opt-outs blank them).
_EMOTION_SLOTS: tuple[tuple[int, int], ...] = tuple(
    (_FRAME_COLUMNS.index(p), _FRAME_COLUMNS.index(s)) for p, s in zip(PROB_COLUMNS, SMOOTHED_COLUMNS)
)
# The hot path on SQLite (every accepted crop batch) as plain SQL: building, compiling and
# binding Core statements per batch cost more Python time than SQLite's own work.
# The consent scope without which no demographics are stored.
DEMOGRAPHICS_SCOPE = "demographics"

_BATCH_COLUMNS = ("session_id", "seq", "nonce", "digest", "frames", "accepted_at")
_SQLITE_INSERT_BATCH = (
    f"INSERT INTO {_batches.name} ({', '.join(_BATCH_COLUMNS)}) VALUES ({', '.join('?' * len(_BATCH_COLUMNS))}) "
    "ON CONFLICT (session_id, seq) DO NOTHING RETURNING seq"
)
_SQLITE_INSERT_FRAMES = (
    f"INSERT INTO {_frames.name} ({', '.join(_FRAME_COLUMNS)}) VALUES ({', '.join('?' * len(_FRAME_COLUMNS))})"
)


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
        viewers left without sessions. Returns the number of sessions deleted."""
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
        prepared = [
            (session_id, batch, [_frame_values(session_id, batch.seq, frame) for frame in batch.frames])
            for session_id, batch in items
        ]
        session_ids = sorted({session_id for session_id, _ in items})
        claimed_all: list[bool] = []
        frame_rows: list[tuple[Any, ...]] = []
        with self._engine.begin() as conn:
            # PostgreSQL: lock the sessions first, in id order, so concurrent groups with the same
            # session roll up one after the other. SQLite: read after the first write, which
            # holds the database's write lock (a read first could not upgrade under WAL).
            sessions = None if self._sqlite else self._ingest_state(conn, session_ids)
            accepted_at = _now()
            for session_id, batch, rows in prepared:
                claimed = self._claim_batch(conn, session_id, batch, len(rows), accepted_at)
                claimed_all.append(claimed)
                if claimed:
                    frame_rows.extend(rows)
            if sessions is None:
                sessions = self._ingest_state(conn, session_ids)
            if frame_rows:
                self._write_frames(conn, _withhold(frame_rows, sessions))
            if self.rollups:
                new = [(sid, batch) for (sid, batch, _), ok in zip(prepared, claimed_all) if ok]
                self._roll_up(conn, new, sessions)
        return claimed_all

    def _ingest_state(self, conn: Connection, session_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """session id -> (allowed emotions or None, rollup_state text or None)."""
        query = select(_sessions.c.session_id, _sessions.c.allowed_emotions, _sessions.c.rollup_state).where(
            _sessions.c.session_id.in_(session_ids)).order_by(_sessions.c.session_id)
        if not self._sqlite and self.rollups:
            query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE: no conflict with FK checks
        return {r.session_id: (rollup_ingest.parse_allowed(r.allowed_emotions), r.rollup_state)
                for r in conn.execute(query)}

    def _roll_up(self, conn: Connection, new: Sequence[tuple[str, BatchRecord]],
                 sessions: Mapping[str, tuple[Any, ...]]) -> None:
        """Adds the new batches' frames to the rollups and advances each session's seek state."""
        by_session: dict[str, list[BatchRecord]] = {}
        for session_id, batch in new:
            by_session.setdefault(session_id, []).append(batch)
        rows: list[Any] = []
        states: list[tuple[str, str]] = []
        incremental: list[tuple[str, Any, Any, Any]] = []
        last_seqs: list[int] = []
        for session_id, batches in by_session.items():
            allowed, state_text = sessions.get(session_id, (None, None))
            resumed = rollup_ingest.decode_state(state_text) if state_text else None
            if resumed is None or min(b.seq for b in batches) <= resumed[1]:
                # First rollup of the session, or a batch arriving after a later one: the
                # pass assignment depends on (seq, index) order, so roll the session up anew.
                session_rows, state, last_seq = self._roll_up_from_frames(conn, session_id, allowed)
                rows += session_rows
                states.append((session_id, rollup_ingest.encode_state(state, last_seq)))
            else:
                frames = [f for b in batches for f in b.frames]
                incremental.append((session_id, frame_arrays(frames), allowed, resumed[0]))
                last_seqs.append(max(b.seq for b in batches))
        # The usual case: every session's new frames rolled up together, in one numpy pass.
        group_rows, group_states = rollup_group(incremental)
        rows += group_rows
        states += [(item[0], rollup_ingest.encode_state(state, last_seq))
                   for item, state, last_seq in zip(incremental, group_states, last_seqs)]
        rollup_ingest.write_rollups(conn, rows, states, self._sqlite)

    def _roll_up_from_frames(self, conn: Connection, session_id: str, allowed: tuple[str, ...] | None) -> tuple[Any, ...]:
        rollup_ingest.delete_rollups(conn, _rollups, session_id)
        arrays, last_seq = rollup_ingest.session_frame_arrays(conn, _frames, session_id)
        rows, state = rollup_session(session_id, arrays, allowed=allowed)
        return rows, state, -1 if last_seq is None else last_seq

    def rebuild_rollups(self, session_id: str) -> int:
        """Recomputes one session's rollups and seek state from its frames; returns the rows written."""
        with self._engine.begin() as conn:
            sessions = self._ingest_state(conn, [session_id])
            if session_id not in sessions:
                return 0
            rows, state, last_seq = self._roll_up_from_frames(conn, session_id, sessions[session_id][0])
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

    def _claim_batch(self, conn: Connection, session_id: str, batch: BatchRecord, frames: int,
                     accepted_at: datetime) -> bool:
        """Inserts the batches row; False when (session_id, seq) is already there."""
        if self._sqlite:
            values = (session_id, batch.seq, batch.nonce, batch.digest, frames, self._bind_time(accepted_at))
            return conn.exec_driver_sql(_SQLITE_INSERT_BATCH, values).first() is not None
        claimed = conn.execute(
            self._insert(_batches)
            .values(
                session_id=session_id,
                seq=batch.seq,
                nonce=batch.nonce,
                digest=batch.digest,
                frames=frames,
                accepted_at=accepted_at,
            )
            .on_conflict_do_nothing(index_elements=[_batches.c.session_id, _batches.c.seq])
            # RETURNING tells portably whether the row was inserted (rowcount is -1 for
            # Core inserts on psycopg unless asked to preserve it).
            .returning(_batches.c.seq)
        ).first()
        return claimed is not None

    def get_batch(self, session_id: str, seq: int) -> BatchRecord | None:
        with self._engine.connect() as conn:
            batch = conn.execute(
                select(_batches.c.nonce, _batches.c.digest).where(
                    _batches.c.session_id == session_id, _batches.c.seq == seq
                )
            ).one_or_none()
            if batch is None:
                return None
            frames = conn.execute(
                select(_frames)
                .where(_frames.c.session_id == session_id, _frames.c.seq == seq)
                .order_by(_frames.c.frame_index)
            ).all()
        return BatchRecord(
            seq=seq,
            nonce=bytes(batch.nonce),
            digest=bytes(batch.digest),
            frames=tuple(_frame_record(row) for row in frames),
        )

    def nonce_used(self, session_id: str, nonce: bytes) -> bool:
        query = select(_batches.c.seq).where(
            _batches.c.session_id == session_id, _batches.c.nonce == nonce
        )
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def session_frames_page(
        self, session_id: str, after: tuple[int, int] | None, limit: int
    ) -> list[FrameRecord]:
        """At most `limit` frames in capture order (seq, index) that come after the frame
        `after` (its (seq, index); None: from the start). Keyset paging on the unique index."""
        query = select(_frames).where(_frames.c.session_id == session_id)
        if after is not None:
            seq, index = after
            query = query.where(
                (_frames.c.seq > seq) | ((_frames.c.seq == seq) & (_frames.c.frame_index > index))
            )
        query = query.order_by(_frames.c.seq, _frames.c.frame_index).limit(limit)
        with self._engine.connect() as conn:
            return [_frame_record(row) for row in conn.execute(query)]

    def session_frames(self, session_id: str) -> list[FrameRecord]:
        query = (
            select(_frames)
            .where(_frames.c.session_id == session_id)
            .order_by(_frames.c.seq, _frames.c.frame_index)
        )
        with self._engine.connect() as conn:
            return [_frame_record(row) for row in conn.execute(query)]

    def last_face_frame(self, session_id: str) -> FrameRecord | None:
        """The latest stored frame with a face (by seq, index): where smoothing resumes after a restart."""
        query = (
            select(_frames)
            .where(_frames.c.session_id == session_id, _frames.c.face_present)
            .order_by(_frames.c.seq.desc(), _frames.c.frame_index.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _frame_record(row)

    def max_seq(self, session_id: str) -> int | None:
        """The highest accepted batch seq of a session, or None before its first batch."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(func.max(_batches.c.seq)).where(_batches.c.session_id == session_id)
            ).scalar_one()

    def count_frames(self, session_id: str | None = None) -> int:
        query = select(func.count()).select_from(_frames)
        if session_id is not None:
            query = query.where(_frames.c.session_id == session_id)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ---------------------------------------------------------------- aggregates (in SQL)

    def session_summary(self, session_id: str) -> SessionSummaryRecord:
        """Frame counts, mean probabilities over frames with a face, video time range.
        An unknown session or one without frames gives zero counts."""
        query = select(
            func.count().label("frames"),
            *_face_aggregates(_frames),
            func.min(_frames.c.video_time_ms).label("first_ms"),
            func.max(_frames.c.video_time_ms).label("last_ms"),
        ).where(_frames.c.session_id == session_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).one()
        return SessionSummaryRecord(
            session_id=session_id,
            frames_total=int(row.frames),
            frames_with_face=int(row.with_face or 0),
            mean_probs=_mean_probs(row),
            first_video_time_ms=None if row.first_ms is None else int(row.first_ms),
            last_video_time_ms=None if row.last_ms is None else int(row.last_ms),
        )

    def video_timeline(
        self, video_id: str, variant_id: str | None, bucket_ms: int
    ) -> list[BucketRecord]:
        """Frames of the video's sessions (one variant, or all when None) grouped into
        buckets [start_ms, start_ms + bucket_ms), ordered by start_ms."""
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
        time_ms = _frames.c.video_time_ms
        # Floor to the bucket with `%` only: SQLite and PostgreSQL both truncate integer
        # division and `%` toward zero, so ((t % b) + b) % b is the same non-negative remainder
        # on both, also for negative times (which plain t / b would round the wrong way).
        start_ms = (time_ms - ((time_ms % bucket_ms) + bucket_ms) % bucket_ms).label("start_ms")
        where = [_sessions.c.video_id == video_id]
        if variant_id is not None:
            where.append(_sessions.c.variant_id == variant_id)
        # Bucket in a subquery and group by its column: PostgreSQL would not match a GROUP BY
        # expression to the SELECT one when each carries its own bound parameters.
        bucketed = (
            select(
                _frames.c.session_id,
                _frames.c.face_present,
                *(_frames.c[col] for col in PROB_COLUMNS),
                start_ms,
            )
            .join(_sessions, _sessions.c.session_id == _frames.c.session_id)
            .where(*where)
            .subquery()
        )
        query = (
            select(
                bucketed.c.start_ms,
                func.count().label("frames"),
                func.count(bucketed.c.session_id.distinct()).label("viewers"),
                *_face_aggregates(bucketed),
            )
            .group_by(bucketed.c.start_ms)
            .order_by(bucketed.c.start_ms)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            BucketRecord(
                start_ms=int(row.start_ms),
                mean_probs=_mean_probs(row),
                viewers=int(row.viewers),
                frames=int(row.frames),
                frames_with_face=int(row.with_face or 0),
            )
            for row in rows
        ]

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

    def _write_frames(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """rows: values in _FRAME_COLUMNS order (see _frame_values)."""
        if self._sqlite:
            # One executemany of plain SQL; SQLite does this in-process, so it is already fast.
            bind = self._bind_time
            c = _CAPTURED_AT
            conn.exec_driver_sql(_SQLITE_INSERT_FRAMES, [(*r[:c], bind(r[c]), *r[c + 1:]) for r in rows])
            return
        # PostgreSQL: COPY streams all rows in one round trip, on the same DBAPI connection
        # and therefore inside the transaction that inserted the batches row.
        import psycopg

        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        try:
            with raw.cursor() as cursor, cursor.copy(_COPY_FRAMES) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            # Same exception types as the Core path (e.g. sqlalchemy.exc.IntegrityError).
            raise DBAPIError.instance(_COPY_FRAMES, None, exc, psycopg.Error) from exc

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


def _withhold(rows: list[tuple[Any, ...]], sessions: Mapping[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Frames rows with each withheld emotion's raw and smoothed probability set to NULL."""
    blank: dict[str, tuple[int, ...]] = {}
    for session_id, (allowed, _) in sessions.items():
        if allowed is not None:
            blank[session_id] = tuple(i for e, slots in zip(EMOTIONS, _EMOTION_SLOTS) if e not in allowed for i in slots)
    if not blank:
        return rows
    out = []
    for row in rows:
        slots = blank.get(row[0])
        if slots:
            values = list(row)
            for i in slots:
                values[i] = None
            row = tuple(values)
        out.append(row)
    return out


def _frame_values(session_id: str, seq: int, frame: FrameRecord) -> tuple[Any, ...]:
    """One frames row, in _FRAME_COLUMNS order (checked below, at import)."""
    if frame.seq != seq:
        raise ValueError(f"frame {frame.index} has seq {frame.seq}, its batch has seq {seq}")
    n = len(EMOTIONS)
    if frame.face_present:
        if frame.probs is None or len(frame.probs) != n:
            raise ValueError(f"frame {frame.index}: a face needs {n} probabilities")
        probs: tuple[float | None, ...] = tuple(map(float, frame.probs))
    else:
        if frame.probs is not None or frame.smoothed is not None:
            raise ValueError(f"frame {frame.index}: probabilities given without a face")
        probs = (None,) * n
    if frame.smoothed is not None and len(frame.smoothed) != n:
        raise ValueError(f"frame {frame.index}: smoothed needs {n} probabilities")
    smoothed = tuple(map(float, frame.smoothed)) if frame.smoothed is not None else (None,) * n
    return (
        session_id,
        seq,
        int(frame.index),
        int(frame.video_time_ms),
        # Normalised here too because COPY bypasses the column type's conversion.
        None if frame.captured_at is None else to_utc(frame.captured_at),
        bool(frame.face_present),
        *probs,
        _opt_float(frame.head_yaw_deg),
        _opt_float(frame.head_pitch_deg),
        _opt_float(frame.face_box_size),
        *smoothed,
    )


_VALUES_ORDER = ("session_id", "seq", "frame_index", "video_time_ms", "captured_at", "face_present",
                 *PROB_COLUMNS, "head_yaw_deg", "head_pitch_deg", "face_box_size", *SMOOTHED_COLUMNS)
if _VALUES_ORDER != _FRAME_COLUMNS:  # a column added or moved in tables.py must be added here too
    raise RuntimeError(f"_frame_values order {_VALUES_ORDER} does not match the frames table {_FRAME_COLUMNS}")


def _frame_record(row: Row[Any]) -> FrameRecord:
    m = row._mapping
    return FrameRecord(
        seq=int(m["seq"]),
        index=int(m["frame_index"]),
        video_time_ms=int(m["video_time_ms"]),
        captured_at=m["captured_at"],
        face_present=bool(m["face_present"]),
        probs=_probs(m, PROB_COLUMNS) if m["face_present"] else None,
        head_yaw_deg=m["head_yaw_deg"],
        head_pitch_deg=m["head_pitch_deg"],
        face_box_size=m["face_box_size"],
        smoothed=_probs(m, SMOOTHED_COLUMNS) if any(m[c] is not None for c in SMOOTHED_COLUMNS) else None,
    )


def _probs(m: Mapping[str, Any], columns: Sequence[str]) -> tuple[float, ...]:
    # NaN: an emotion the viewer withheld (stored as NULL).
    return tuple(float("nan") if m[c] is None else float(m[c]) for c in columns)


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


def _face_aggregates(source: Any) -> list[Any]:
    """`with_face` count and `mean_<p>` averages over the rows of `source` with a face."""
    face = source.c.face_present
    return [
        func.sum(case((face, 1), else_=0)).label("with_face"),
        *(func.avg(case((face, source.c[col]))).label(f"mean_{col}") for col in PROB_COLUMNS),
    ]


def _mean_probs(row: Row[Any]) -> tuple[float, ...] | None:
    m: Mapping[str, Any] = row._mapping
    if not m["with_face"]:
        return None
    # NaN: an emotion the viewer withheld (no stored values to average).
    return tuple(float("nan") if m[f"mean_{col}"] is None else float(m[f"mean_{col}"]) for col in PROB_COLUMNS)

"""Reads of the per session-second rollups for the analytics: filtered, summed in SQL.

Curves, moments, segments, A/B tests and norms all start here and never scan frames. Rows
come back as analytics.rollup.RollupColumns (per-second rows) or SecondRollup (per-session
sums), so the pure layer recombines them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import cast as sql_cast
from sqlalchemy import Double, Engine, Table, case, func, literal, literal_column, select

import numpy as np

from affectline.analytics.rollup import VALUE_FIELDS, RollupColumns, SecondRollup
from affectline.storage.rollup_ingest import from_row
from affectline.storage.tables import (
    ROLLUP_VALUE_COLUMNS,
    SecondRollupRow,
    Video,
    Viewer,
    ViewingSession,
    to_utc,
)

_rollups, _sessions, _viewers, _videos = (
    cast(Table, model.__table__) for model in (SecondRollupRow, ViewingSession, Viewer, Video)  # type: ignore[attr-defined]
)

PASSES = ("first", "rewatches", "all")
if VALUE_FIELDS != ROLLUP_VALUE_COLUMNS:  # a column added or moved in tables.py must be added there too
    raise RuntimeError(f"analytics.rollup.VALUE_FIELDS {VALUE_FIELDS} do not match the rollups table")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which sessions and rows a query reads; empty tuples and None do not filter."""

    variant_ids: tuple[str, ...] = ()
    age_bands: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    sessions_from: datetime | None = None
    sessions_to: datetime | None = None
    start_s: int | None = None  # video seconds [start_s, end_s)
    end_s: int | None = None
    passes: str = "first"  # PASSES


@dataclass(frozen=True, slots=True)
class SessionMeta:
    session_id: str
    video_id: str
    variant_id: str
    age_band: str
    gender: str
    region: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class SessionTotals:
    """A session's rows of the selection summed into one (second 0, pass 0), and its meta."""

    meta: SessionMeta
    totals: SecondRollup
    seconds_watched: int


@dataclass(frozen=True, slots=True, eq=False)
class SecondStats:
    """One group's per-second statistics across viewers (RollupStore.second_stats)."""

    sessions: int  # viewers with frames in the selection
    members: int  # sessions with rows in the selection
    seconds: np.ndarray  # int64: the seconds some viewer watched, ascending
    watched: np.ndarray  # int64: viewers with frames in each
    stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # metric -> (count, mean, var_samp); NaN: none


class RollupStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _session_where(self, video_id: str | None, sel: Selection) -> list[Any]:
        s, v = _sessions.c, _viewers.c
        where: list[Any] = [] if video_id is None else [s.video_id == video_id]
        for column, values in ((s.variant_id, sel.variant_ids), (v.age_band, sel.age_bands),
                               (v.gender, sel.genders), (v.region, sel.regions)):
            if values:
                where.append(column.in_(values))
        if sel.sessions_from is not None:
            where.append(s.started_at >= to_utc(sel.sessions_from))
        if sel.sessions_to is not None:
            where.append(s.started_at < to_utc(sel.sessions_to))
        return where

    def _row_where(self, sel: Selection) -> list[Any]:
        r = _rollups.c
        where: list[Any] = []
        if sel.passes == "first":
            where.append(r.pass_index == 0)
        elif sel.passes == "rewatches":
            where.append(r.pass_index >= 1)
        elif sel.passes != "all":
            raise ValueError(f"passes must be one of {PASSES}, got {sel.passes!r}")
        if sel.start_s is not None:
            where.append(r.second >= sel.start_s)
        if sel.end_s is not None:
            where.append(r.second < sel.end_s)
        return where

    def _meta_columns(self) -> list[Any]:
        s, v = _sessions.c, _viewers.c
        return [s.video_id, s.variant_id, v.age_band, v.gender, v.region, s.started_at]

    def sessions(self, video_id: str | None, sel: Selection) -> dict[str, SessionMeta]:
        """The sessions the selection's session filters keep (rows not read)."""
        query = (
            select(_sessions.c.session_id, *self._meta_columns())
            .join(_viewers, _viewers.c.viewer_id == _sessions.c.viewer_id)
            .where(*self._session_where(video_id, sel))
        )
        with self._engine.connect() as conn:
            return {r.session_id: _meta(r) for r in conn.execute(query)}

    def second_rollups(self, video_id: str, sel: Selection, metrics: Iterable[str] | None = None) -> RollupColumns:
        """One row per (session, second) of the selection, the selected passes summed (pass 0),
        as columns: a video's curves read tens of thousands of rows. With `metrics`, only the
        columns behind them (and frames, attention) are read; the others are NaN."""
        r = _rollups.c
        fields = VALUE_FIELDS if metrics is None else _fields_of(metrics)
        where = [*self._session_where(video_id, sel), *self._row_where(sel)]
        if sel.passes == "first":  # one row per (session, second) already
            query = select(r.session_id, r.second, *(r[c] for c in fields))
        else:
            query = select(r.session_id, r.second, *(func.sum(r[c]) for c in fields)).group_by(r.session_id, r.second)
        query = (query.join_from(_rollups, _sessions, _sessions.c.session_id == r.session_id)
                 .join(_viewers, _viewers.c.viewer_id == _sessions.c.viewer_id).where(*where))
        rows = self._fetch(query)
        ids, session = np.unique(np.array([row[0] for row in rows], dtype=object), return_inverse=True)
        numbers = np.array([row[1:] for row in rows], dtype=np.float64).reshape(len(rows), 1 + len(fields))
        values = np.full((len(rows), len(VALUE_FIELDS)), np.nan)
        values[:, [VALUE_FIELDS.index(f) for f in fields]] = numbers[:, 1:]
        return RollupColumns(tuple(ids.tolist()), session.reshape(-1).astype(np.int64),
                             numbers[:, 0].astype(np.int64), np.zeros(len(rows), dtype=np.int64), values)

    def _fetch(self, query: Any) -> list[tuple[Any, ...]]:
        """All rows as plain tuples; on PostgreSQL in binary format (about half the parse time
        of text for tens of thousands of floats), bypassing Row objects."""
        with self._engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return [tuple(row) for row in conn.execute(query)]
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            raw = conn.connection.driver_connection
            with raw.cursor(binary=True) as cursor:
                cursor.execute(str(compiled), compiled.params)
                return cursor.fetchall()

    def second_stats(self, video_id: str, sel: Selection, metrics: Iterable[str],
                     min_attention_share: float | None = None, group_by: str | None = None
                     ) -> dict[str, SecondStats] | None:
        """Per (group, second), across viewers: how many watched, and each metric's count, mean
        and sample variance of the per-viewer means (sum / frames of the selected passes), all
        in SQL, so a curve reads ~60 rows instead of every viewer's. `group_by` is one of
        SessionMeta's fields (None: one group, key ""). Sessions below `min_attention_share`
        (attentive / pose_known over the selected rows; unknown: left out) are dropped first.

        PostgreSQL only (avg and var_samp over float8); None on other databases, whose
        callers recombine the rows from `second_rollups` instead.
        """
        if self._engine.dialect.name != "postgresql":
            return None
        metrics = tuple(metrics)
        r, s, v = _rollups.c, _sessions.c, _viewers.c
        group_col = {None: literal_column("''"), "variant_id": s.variant_id, "age_band": v.age_band, "gender": v.gender,
                     "region": v.region}[group_by]
        fields = _fields_of(metrics)
        # The sessions first, fenced off (MATERIALIZED): the viewers are joined once per session,
        # not once per rollup row, whatever the planner estimates.
        sess = (select(s.session_id, group_col.label("grp")).join(_viewers, v.viewer_id == s.viewer_id)
                .where(*self._session_where(video_id, sel))
                .cte("sess").prefix_with("MATERIALIZED", dialect="postgresql"))
        rows_where = [r.session_id == sess.c.session_id, *self._row_where(sel)]
        if sel.passes == "first":  # one row per (session, second) already
            base = select(r.session_id, r.second, sess.c.grp, *(r[c].label(c) for c in fields))
        else:
            base = select(r.session_id, r.second, sess.c.grp, *(func.sum(r[c]).label(c) for c in fields)
                          ).group_by(r.session_id, r.second, sess.c.grp)
        base = base.select_from(_rollups).join(sess, sess.c.session_id == r.session_id).where(*rows_where)
        if min_attention_share is not None:
            kept = (select(r.session_id).select_from(_rollups).join(sess, sess.c.session_id == r.session_id)
                    .where(*rows_where).group_by(r.session_id).having(func.sum(r.pose_known) > 0)
                    .having(sql_cast(func.sum(r.attentive), Double) / func.sum(r.pose_known) >= min_attention_share))
            base = base.where(r.session_id.in_(kept.scalar_subquery()))
        b = base.subquery("b")
        means = []
        for m in metrics:
            total, frames = ("attentive", "pose_known") if m == "attention" else (f"{m}_sum", f"{m}_frames")
            means.append(case((b.c[frames] > 0, sql_cast(b.c[total], Double) / b.c[frames])).label(m))
        x = select(b.c.session_id, b.c.second, b.c.grp, b.c.frames, *means).cte("x").prefix_with("MATERIALIZED")
        aggs = [agg for m in metrics for agg in (func.count(x.c[m]), func.avg(x.c[m]), func.var_samp(x.c[m]))]
        nothing = literal_column("NULL")
        per_second = (select(x.c.grp, x.c.second, func.count(), *aggs, nothing, nothing).where(x.c.frames > 0)
                      .group_by(x.c.grp, x.c.second))
        # one row per group (second NULL): its sessions with rows, and with frames
        viewer = (select(x.c.grp, func.max(case((x.c.frames > 0, 1), else_=0)).label("w"))
                  .group_by(x.c.grp, x.c.session_id).subquery("viewer"))
        per_group = select(viewer.c.grp, nothing, nothing, *(nothing for _ in aggs), func.count(),
                           func.sum(viewer.c.w)).group_by(viewer.c.grp)
        rows = self._fetch(per_second.union_all(per_group))
        width = 2 + 3 * len(metrics)
        members = {row[0]: (int(row[-2]), int(row[-1])) for row in rows if row[1] is None}
        out: dict[str, SecondStats] = {}
        for g in sorted(members):
            mine = sorted((row[1:1 + width] for row in rows if row[0] == g and row[1] is not None), key=lambda t: t[0])
            numbers = np.array(mine, dtype=np.float64).reshape(len(mine), width)
            out[g] = SecondStats(
                sessions=members[g][1], members=members[g][0],
                seconds=numbers[:, 0].astype(np.int64), watched=numbers[:, 1].astype(np.int64),
                stats={m: (numbers[:, 2 + 3 * i].astype(np.int64), numbers[:, 3 + 3 * i], numbers[:, 4 + 3 * i])
                       for i, m in enumerate(metrics)},
            )
        return out

    def session_totals(self, video_id: str | None, sel: Selection) -> list[SessionTotals]:
        """Per session, its selected rows summed: what session summaries (A/B, norms) need."""
        r = _rollups.c
        # The sessions first, fenced off (MATERIALIZED), so the viewers are joined once per
        # session whatever the planner estimates; then one hash aggregate over the rows. On
        # the first pass (session, second) is unique, so counting rows counts seconds.
        sess = (select(_sessions.c.session_id, *self._meta_columns())
                .join(_viewers, _viewers.c.viewer_id == _sessions.c.viewer_id)
                .where(*self._session_where(video_id, sel))
                .cte("sess").prefix_with("MATERIALIZED", dialect="postgresql"))
        seconds = func.count() if sel.passes == "first" else func.count(r.second.distinct())
        sums = (select(r.session_id, seconds.label("seconds_watched"),
                       *(func.sum(r[c]).label(c) for c in ROLLUP_VALUE_COLUMNS))
                .select_from(_rollups).join(sess, sess.c.session_id == r.session_id)
                .where(*self._row_where(sel)).group_by(r.session_id).subquery("sums"))
        query = (
            select(sums.c.session_id, literal(0).label("second"), literal(0).label("pass_index"),
                   sums.c.seconds_watched, *(sums.c[c] for c in ROLLUP_VALUE_COLUMNS),
                   *(sess.c[c.name] for c in self._meta_columns()))
            .join_from(sums, sess, sess.c.session_id == sums.c.session_id)
            .order_by(sums.c.session_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [SessionTotals(_meta(m), from_row(m), int(m["seconds_watched"])) for m in rows]

    def videos(self) -> list[dict[str, Any]]:
        """Every video's id and title, oldest first."""
        query = select(_videos.c.video_id, _videos.c.title).order_by(_videos.c.created_at, _videos.c.video_id)
        with self._engine.connect() as conn:
            return [dict(m) for m in conn.execute(query).mappings()]

    def video_exists(self, video_id: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(_videos.c.video_id).where(_videos.c.video_id == video_id)).first() is not None


def _fields_of(metrics: Iterable[str]) -> tuple[str, ...]:
    """The value fields behind the metrics, plus frames and attention (filters read them)."""
    wanted = {"frames", "attentive", "pose_known"}
    for m in metrics:
        if m != "attention":
            wanted |= {f"{m}_sum", f"{m}_frames"}
    return tuple(f for f in VALUE_FIELDS if f in wanted)


def _meta(m: Any) -> SessionMeta:
    m = getattr(m, "_mapping", m)
    return SessionMeta(m["session_id"], m["video_id"], m["variant_id"], m["age_band"], m["gender"], m["region"],
                       m["started_at"])


"""Rollups at ingest: the SQL and the conversions TimelineStore uses to keep `rollups` current.

The rows come from the pure layer (analytics.rollup_session); this module only moves them
and the per-session SeekState in and out of the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, delete, select

from affectline.analytics.definitions import FrameArrays
from affectline.analytics.rollup import SecondRollup, SeekState
from affectline.storage.records import EMOTIONS
from affectline.storage.tables import PROB_COLUMNS, ROLLUP_VALUE_COLUMNS, SMOOTHED_COLUMNS

_KEY = ("session_id", "second", "pass_index")
ROLLUP_COLUMNS: tuple[str, ...] = (*_KEY, *ROLLUP_VALUE_COLUMNS)
# Adding on conflict is what makes rows of any split of the frames sum to the whole.
_ON_CONFLICT_ADD = (
    "ON CONFLICT (session_id, second, pass_index) DO UPDATE SET "
    + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in ROLLUP_VALUE_COLUMNS)
)
SQLITE_UPSERT = (
    f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))}) "
    + _ON_CONFLICT_ADD
)


def _pg_type(column: str) -> str:
    if column == "session_id":
        return "text"
    if column == "second":
        return "bigint"
    return "float8" if column.endswith("_sum") else "int4"


# PostgreSQL: a group's rows and its sessions' seek states in ONE statement (one round trip),
# one array parameter per column.
PG_UPSERT = (
    f"WITH added AS (INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{_pg_type(c)}[]" for c in ROLLUP_COLUMNS)
    + ") "
    + _ON_CONFLICT_ADD
    + ") UPDATE sessions SET rollup_state = v.state FROM unnest(%s::text[], %s::text[]) AS v(id, state) "
    "WHERE sessions.session_id = v.id"
)
SQLITE_SAVE_STATE = "UPDATE sessions SET rollup_state = ? WHERE session_id = ?"


def row_values(r: SecondRollup) -> tuple[Any, ...]:
    """A rollups row in ROLLUP_COLUMNS order."""
    values: list[Any] = [r.session_id, r.second, r.pass_index, r.frames, r.frames_with_face, r.attentive, r.pose_known]
    for s, n in zip(r.emotion_sums, r.emotion_frames):
        values += [s, n]
    for name in ("confidence", "valence", "expressiveness", "engagement", "sentiment"):
        values += [getattr(r, f"{name}_sum"), getattr(r, f"{name}_frames")]
    return tuple(values)


def from_row(m: Any) -> SecondRollup:
    """A SecondRollup from a mapping with the rollups columns (a table row or a GROUP BY row)."""
    extra = {f"{n}_{k}": m[f"{n}_{k}"] for n in ("confidence", "valence", "expressiveness", "engagement", "sentiment")
             for k in ("sum", "frames")}
    return SecondRollup(
        session_id=m["session_id"], second=int(m["second"]), pass_index=int(m["pass_index"]),
        frames=int(m["frames"]), frames_with_face=int(m["frames_with_face"]), attentive=int(m["attentive"]),
        pose_known=int(m["pose_known"]),
        emotion_sums=tuple(float(m[f"{e}_sum"]) for e in EMOTIONS),
        emotion_frames=tuple(int(m[f"{e}_frames"]) for e in EMOTIONS),
        **{k: (float(v) if k.endswith("_sum") else int(v)) for k, v in extra.items()},
    )


def write_rollups(conn: Connection, rows: Sequence[SecondRollup], states: Sequence[tuple[str, str]],
                  sqlite: bool) -> None:
    """Adds `rows` to the stored ones and saves each (session id, encoded seek state)."""
    values = [row_values(r) for r in rows]
    if sqlite:
        if values:
            conn.exec_driver_sql(SQLITE_UPSERT, values)
        if states:
            conn.exec_driver_sql(SQLITE_SAVE_STATE, [(state, sid) for sid, state in states])
        return
    columns = [list(c) for c in zip(*values)] if values else [[] for _ in ROLLUP_COLUMNS]
    conn.exec_driver_sql(PG_UPSERT, (*columns, [sid for sid, _ in states], [state for _, state in states]))


def delete_rollups(conn: Connection, rollups: Table, session_id: str) -> None:
    conn.execute(delete(rollups).where(rollups.c.session_id == session_id))


# ------------------------------------------------------------------ seek state <-> text


def _runs(mapping: dict[int, int]) -> list[list[int]]:
    """{second: value} as [first, last, value] runs of consecutive seconds with one value."""
    runs: list[list[int]] = []
    for sec in sorted(mapping):
        value = mapping[sec]
        if runs and runs[-1][1] == sec - 1 and runs[-1][2] == value:
            runs[-1][1] = sec
        else:
            runs.append([sec, sec, value])
    return runs


def _unruns(runs: Iterable[Sequence[int]]) -> dict[int, int]:
    return {sec: value for first, last, value in runs for sec in range(first, last + 1)}


def encode_state(state: SeekState, last_seq: int) -> str:
    """Compact JSON: runs keep it small however long the session (one run per seek, typically)."""
    return json.dumps(
        {"t": state.last_video_time_ms, "q": last_seq, "v": _runs(dict(state.viewings)), "c": _runs(dict(state.current))},
        separators=(",", ":"),
    )


def decode_state(text: str) -> tuple[SeekState, int]:
    raw = json.loads(text)
    return SeekState(raw["t"], _unruns(raw["v"]), _unruns(raw["c"])), int(raw["q"])


def parse_allowed(text: str | None) -> tuple[str, ...] | None:
    """The sessions.allowed_emotions column: None means all seven."""
    return tuple(json.loads(text)) if text else None


# ------------------------------------------------------------------ frames -> arrays


def session_frame_arrays(conn: Connection, frames: Table, session_id: str) -> tuple[FrameArrays, int | None]:
    """A session's stored frames as arrays (smoothed probabilities where stored) and its last seq.

    Read column-wise, without FrameRecords: a rebuild reads millions of frames.
    """
    cols = [frames.c.seq, frames.c.frame_index, frames.c.video_time_ms, frames.c.face_present,
            frames.c.head_yaw_deg, frames.c.head_pitch_deg,
            *(frames.c[c] for c in SMOOTHED_COLUMNS), *(frames.c[c] for c in PROB_COLUMNS)]
    rows = conn.execute(select(*cols).where(frames.c.session_id == session_id)).all()
    n = len(rows)
    if n == 0:
        return FrameArrays(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros((0, 7))), None
    a = np.array([tuple(np.nan if v is None else v for v in r) for r in rows], dtype=np.float64)
    smoothed, raw = a[:, 6:13], a[:, 13:20]
    # Smoothed where the frame has any (withheld emotions are NULL in both), raw otherwise.
    has_smoothed = ~np.all(np.isnan(smoothed), axis=1)
    probs = np.where(has_smoothed[:, None], smoothed, raw)
    arrays = FrameArrays(a[:, 0], a[:, 1], a[:, 2], a[:, 3] != 0, probs, a[:, 4], a[:, 5])
    return arrays, int(a[:, 0].max())

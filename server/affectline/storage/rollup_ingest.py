"""Rollups at ingest: the SQL and the conversions TimelineStore uses to keep `rollups` current.

The rows come from the pure layer (analytics.rollup_session); this module only moves them
and the per-session SeekState in and out of the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, delete

from affectline.analytics.definitions import FrameArrays
from affectline.analytics.rollup import SecondRollup, SeekState
from affectline.analytics.run_map import RunMap, to_runs
from affectline.storage import frame_pack, pg_stage
from affectline.storage.records import EMOTIONS
from affectline.storage.tables import ROLLUP_VALUE_COLUMNS

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
        return "int8"
    return "float8" if column.endswith("_sum") else "int4"


# PostgreSQL: a group's rows go in by binary COPY into per-connection staging tables, then one
# upsert and one UPDATE read them: no per-value text conversion, two statements per group.
_PG_STAGE = "rollup_stage"
_PG_STATE_STAGE = "rollup_state_stage"
_PG_CREATE_STAGES = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGE} (LIKE rollups) ON COMMIT DELETE ROWS; "
    f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STATE_STAGE} (session_id text, state text) ON COMMIT DELETE ROWS"
)
_PG_COPY_ROWS = f"COPY {_PG_STAGE} ({', '.join(ROLLUP_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_STATES = f"COPY {_PG_STATE_STAGE} (session_id, state) FROM STDIN (FORMAT BINARY)"
_PG_UPSERT = (f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) SELECT {', '.join(ROLLUP_COLUMNS)} FROM {_PG_STAGE} "
              + _ON_CONFLICT_ADD)
_PG_SAVE_STATES = (f"UPDATE sessions SET rollup_state = s.state FROM {_PG_STATE_STAGE} s "
                   "WHERE sessions.session_id = s.session_id")
_PG_TYPES = tuple(_pg_type(c) for c in ROLLUP_COLUMNS)
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
    with pg_stage.staging_cursor(conn, _PG_CREATE_STAGES) as cursor:
        if values:
            pg_stage.copy_rows(cursor, _PG_COPY_ROWS, _PG_TYPES, values)
            cursor.execute(_PG_UPSERT)
        if states:
            pg_stage.copy_rows(cursor, _PG_COPY_STATES, ("text", "text"), states)
            cursor.execute(_PG_SAVE_STATES)


def delete_rollups(conn: Connection, rollups: Table, session_id: str) -> None:
    conn.execute(delete(rollups).where(rollups.c.session_id == session_id))


# ------------------------------------------------------------------ seek state <-> text


def encode_state(state: SeekState, last_seq: int) -> str:
    """Compact JSON: runs keep it small however long the session (one run per seek, typically)."""
    return json.dumps(
        {"t": state.last_video_time_ms, "q": last_seq, "v": to_runs(state.viewings), "c": to_runs(state.current)},
        separators=(",", ":"),
    )


def decode_state(text: str) -> tuple[SeekState, int]:
    raw = json.loads(text)
    return SeekState(raw["t"], RunMap(raw["v"]), RunMap(raw["c"])), int(raw["q"])


def parse_allowed(text: str | None) -> tuple[str, ...] | None:
    """The sessions.allowed_emotions column: None means all seven."""
    return tuple(json.loads(text)) if text else None


# ------------------------------------------------------------------ frames -> arrays


def packed_frame_arrays(seqs: Sequence[int], values: Sequence[Any]) -> FrameArrays:
    """Batches' packed frames (storage/frame_pack.py) as arrays, smoothed probabilities where
    stored: what rollups are made of. Decoded with numpy, without per-frame objects."""
    frames, counts = frame_pack.unpack_many(values)
    seq = np.repeat(np.asarray(seqs, np.int64), counts)
    index = np.arange(len(frames)) - np.repeat(np.cumsum(counts) - counts, counts)  # position in its batch
    smoothed = frames["smoothed"].astype(np.float64)
    raw = frames["probs"].astype(np.float64)
    # Smoothed where the frame has any (withheld emotions are NaN in both), raw otherwise.
    has_smoothed = ~np.all(np.isnan(smoothed), axis=1)
    probs = np.where(has_smoothed[:, None], smoothed, raw)
    pose = frames["pose"].astype(np.float64)
    return FrameArrays(seq, index, frames["video_time_ms"],
                       frames["face_present"] != 0, probs, pose[:, 0], pose[:, 1])

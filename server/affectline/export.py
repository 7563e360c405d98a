"""Export of session timelines, per-second curves and per-viewer summaries as CSV or Parquet.

Rows are produced in chunks and encoded as they come (CSV lines, Parquet row groups), so a
whole video's frames never sit in memory. Filters are the API's: a storage Selection, plus the
emotions to report (None: all seven) and the minimum attentive share of a viewer.

`csv_parts` and `parquet_parts` yield the file piece by piece (ExportAnalytics and
GET /api/export stream them); `write_csv` and `write_parquet` (the CLI) write the same pieces.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from affectline import analytics as al
from affectline.storage.records import EMOTIONS
from affectline.storage.rollup_store import RollupStore, Selection
from affectline.storage.timeline_store import TimelineStore

KINDS = ("timelines", "curves", "summaries")
FORMATS = ("csv", "parquet")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
FRAME_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class Table:
    """One export: column names and (types for Parquet) and row chunks."""

    columns: tuple[str, ...]
    types: tuple[str, ...]  # "str", "int", "float", "bool"
    chunks: Iterator[list[tuple[Any, ...]]]


def _emotion_indices(emotions: tuple[str, ...] | None) -> list[int]:
    return [i for i, e in enumerate(EMOTIONS) if emotions is None or e in emotions]


def _attentive(totals: list[Any], share: float | None) -> list[Any]:
    """Sessions whose attentive share over the selection reaches `share` (unknown: left out)."""
    if share is None:
        return totals
    return [t for t in totals if t.totals.pose_known and t.totals.attentive / t.totals.pose_known >= share]


def timelines(store: TimelineStore, rollups: RollupStore, video_id: str, sel: Selection, *,
              emotions: tuple[str, ...] | None = None, min_attention_share: float | None = None) -> Table:
    """Every stored frame of the selected sessions, session by session, in capture order
    (probability columns of the chosen emotions only)."""
    sessions = rollups.sessions(video_id, sel)
    if min_attention_share is not None:
        keep = {t.meta.session_id for t in _attentive(rollups.session_totals(video_id, sel), min_attention_share)}
        sessions = {k: v for k, v in sessions.items() if k in keep}
    picked = _emotion_indices(emotions)
    none = (None,) * len(EMOTIONS)
    columns = ("session_id", "variant_id", "seq", "frame_index", "video_time_ms", "face_present",
               *(f"p_{EMOTIONS[i]}" for i in picked), *(f"s_{EMOTIONS[i]}" for i in picked),
               "head_yaw_deg", "head_pitch_deg")
    types = ("str", "str", "int", "int", "int", "bool", *("float",) * (2 * len(picked)), "float", "float")

    def chunks() -> Iterator[list[tuple[Any, ...]]]:
        for session_id in sorted(sessions):
            after = None
            while frames := store.session_frames_page(session_id, after, FRAME_CHUNK):
                after = (frames[-1].seq, frames[-1].index)
                rows = []
                for f in frames:
                    p, sm = f.probs or none, f.smoothed or none
                    rows.append((session_id, sessions[session_id].variant_id, f.seq, f.index, f.video_time_ms,
                                 f.face_present, *(p[i] for i in picked), *(sm[i] for i in picked),
                                 f.head_yaw_deg, f.head_pitch_deg))
                yield rows

    return Table(columns, types, chunks())


def curves(rollups: RollupStore, video_id: str, sel: Selection, config: al.MetricConfig, *,
           emotions: tuple[str, ...] | None = None, min_attention_share: float | None = None) -> Table:
    """One row per second and metric, as GetVideoCurves reports them (suppressed: empty)."""
    rows = rollups.second_rollups(video_id, sel)
    if min_attention_share is not None:
        rows = al.filter_attention(rows, min_attention_share)
    c = al.video_curves(rows, config, emotions=emotions, start_s=sel.start_s, end_s=sel.end_s)
    rows = [(int(s), name, int(c.viewers[i]), int(m.viewers[i]), m.mean[i], m.ci_low[i], m.ci_high[i],
             bool(c.suppressed[i]))
            for name, m in c.curves.items() for i, s in enumerate(c.seconds)]
    return Table(("second", "metric", "viewers_present", "viewers", "mean", "ci_low", "ci_high", "suppressed"),
                 ("int", "str", "int", "int", "float", "float", "float", "bool"), iter([rows]))


class BelowFloor(ValueError):
    """The selection has fewer viewers than the floor: per-viewer rows are not exported."""


def summaries(rollups: RollupStore, video_id: str, sel: Selection, config: al.MetricConfig, *,
              emotions: tuple[str, ...] | None = None, min_attention_share: float | None = None) -> Table:
    """One row per viewer (session): its means over the selection, with variant and demographics
    (mean columns of the chosen emotions and of every derived metric).

    Refused below the viewer floor, like every other view of a small group.
    """
    totals = _attentive(rollups.session_totals(video_id, sel), min_attention_share)
    metrics = tuple(k for k in al.METRICS if k not in EMOTIONS or emotions is None or k in emotions)
    reason = al.below_floor(len(totals), config.min_viewers)
    if reason:
        raise BelowFloor(f"not exported: {reason} in the selection")
    rows = []
    for t in sorted(totals, key=lambda t: t.meta.session_id):
        s = al.summarize_session(t.meta.session_id, [t.totals])
        m = t.meta
        rows.append((m.session_id, m.variant_id, m.age_band, m.gender, m.region, m.started_at.isoformat(),
                     t.seconds_watched, s.frames, s.frames_with_face, *(s.means[k] for k in metrics),
                     s.dominant_emotion or ""))
    columns = ("session_id", "variant_id", "age_band", "gender", "region", "started_at", "seconds_watched", "frames",
               "frames_with_face", *(f"mean_{k}" for k in metrics), "dominant_emotion")
    types = ("str",) * 6 + ("int",) * 3 + ("float",) * len(metrics) + ("str",)
    return Table(columns, types, iter([rows]))


def _cell(value: Any) -> Any:
    # CSV: NaN and None (suppressed, undefined, withheld) are empty cells.
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


class _Counted:
    """The rows a table's chunks held, counted as they pass."""

    def __init__(self, table: Table) -> None:
        self.rows = 0
        self.table = Table(table.columns, table.types, self._count(table.chunks))

    def _count(self, chunks: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
        for chunk in chunks:
            self.rows += len(chunk)
            yield chunk


def csv_parts(table: Table) -> Iterator[str]:
    """The CSV text: the header, then one piece per chunk of rows."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.columns)
    yield buf.getvalue()
    for chunk in table.chunks:
        buf.seek(0)
        buf.truncate()
        writer.writerows([_cell(v) for v in row] for row in chunk)
        yield buf.getvalue()


class _Drain(io.RawIOBase):
    """A write-only sink that hands out what was written since the last take (Parquet needs
    tell() to count every byte written, so it cannot be a BytesIO that is emptied)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet_parts(table: Table) -> Iterator[bytes]:
    """The Parquet file: one row group per chunk, each handed out once written, then the footer.
    NaN (suppressed, undefined, withheld) is written as null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(name, kinds[t]) for name, t in zip(table.columns, table.types)])
    sink = _Drain()
    with pq.ParquetWriter(sink, schema) as writer:
        for chunk in table.chunks:
            columns = list(zip(*chunk)) if chunk else [[] for _ in table.columns]
            writer.write_table(pa.table([pa.array(list(c), type=f.type, from_pandas=True) for c, f in zip(columns, schema)],
                                        schema=schema))
            if data := sink.take():
                yield data
    yield sink.take()


def write_csv(table: Table, out: IO[str]) -> int:
    counted = _Counted(table)
    for part in csv_parts(counted.table):
        out.write(part)
    return counted.rows


def write_parquet(table: Table, out: IO[bytes]) -> int:
    """One row group per chunk; NaN (suppressed, undefined, withheld) is written as null."""
    counted = _Counted(table)
    for part in parquet_parts(counted.table):
        out.write(part)
    return counted.rows

"""Per session-second rollups: sums and counts, so any filter recombines them exactly.

A row is keyed by (session, video second, pass). Pass 0 is the first viewing of a second;
a viewer who seeks back and watches it again adds pass 1, 2, ... Seconds never watched have
no row: skipped is "not watched", never "zero emotion".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from affectline.analytics.definitions import (
    DEFAULT_CONFIG,
    N_EMOTIONS,
    FrameArrays,
    FrameMetrics,
    MetricConfig,
    frame_metrics,
)
from affectline.analytics.run_map import RunMap
from affectline.storage.records import EMOTIONS

# Metrics kept as (sum, frames) pairs in a row, besides the seven emotions.
SUMMED = ("confidence", "valence", "expressiveness", "engagement", "sentiment")
# What per_viewer_second_means and curves report.
METRICS: tuple[str, ...] = (*EMOTIONS, *SUMMED, "attention")


@dataclass(frozen=True, slots=True)
class SecondRollup:
    """One session's frames in one video second of one pass; maps onto one table row."""

    session_id: str
    second: int  # floor(video_time_ms / 1000)
    pass_index: int  # 0: first viewing; 1, 2, ...: rewatches after seeking back
    frames: int
    frames_with_face: int
    attentive: int  # frames with attention 1
    pose_known: int  # frames with attention 0 or 1 (face absent counts as known, inattentive)
    emotion_sums: tuple[float, ...]  # sum of each (smoothed) probability, EMOTIONS order
    emotion_frames: tuple[int, ...]  # frames behind each sum (0 for a withheld emotion)
    confidence_sum: float = 0.0
    confidence_frames: int = 0
    valence_sum: float = 0.0
    valence_frames: int = 0
    expressiveness_sum: float = 0.0
    expressiveness_frames: int = 0
    engagement_sum: float = 0.0
    engagement_frames: int = 0
    sentiment_sum: float = 0.0
    sentiment_frames: int = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.session_id, self.second, self.pass_index)

    def total(self, metric: str) -> tuple[float, int]:
        """(sum, frames) behind a metric's mean in this row."""
        if metric in EMOTIONS:
            i = EMOTIONS.index(metric)
            return self.emotion_sums[i], self.emotion_frames[i]
        if metric == "attention":
            return float(self.attentive), self.pose_known
        return getattr(self, f"{metric}_sum"), getattr(self, f"{metric}_frames")


@dataclass(frozen=True, slots=True)
class SeekState:
    """Where a session's pass assignment stands after the frames seen so far (for ingest)."""

    last_video_time_ms: int | None = None
    # second -> viewings that have reached it so far (the current one included)
    viewings: Mapping[int, int] = field(default_factory=dict)
    # second -> its pass in the current viewing
    current: Mapping[int, int] = field(default_factory=dict)


def assign_passes(
    video_time_ms: np.ndarray, config: MetricConfig = DEFAULT_CONFIG, state: SeekState | None = None
) -> tuple[np.ndarray, SeekState]:
    """The pass of each frame (frames in (seq, index) order) and the state after them.

    A step back in video time of more than `config.seek_tolerance_ms` starts a new viewing;
    within a viewing a second's pass is the number of earlier viewings that reached it.
    """
    state = state or SeekState()
    t = np.asarray(video_time_ms, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64), state
    prev = np.concatenate(([t[0] if state.last_video_time_ms is None else state.last_video_time_ms], t[:-1]))
    viewing = np.cumsum(t < prev - config.seek_tolerance_ms)  # 0: the viewing already under way
    second = t // 1000
    if not viewing[-1]:
        return _continue_viewing(t, second, state)
    pairs, inverse = np.unique(np.stack([second, viewing], axis=1), axis=0, return_inverse=True)
    group_start = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")
    rank = np.arange(len(pairs)) - group_start
    viewings = dict(state.viewings)
    current: dict[int, int] = {}
    pair_pass = np.empty(len(pairs), dtype=np.int64)
    for sec in np.unique(pairs[:, 0]).tolist():
        lo = int(np.searchsorted(pairs[:, 0], sec, side="left"))
        hi = int(np.searchsorted(pairs[:, 0], sec, side="right"))
        continuing = pairs[lo, 1] == 0 and sec in state.current
        before = viewings.get(sec, 0)
        for j in range(lo, hi):
            pair_pass[j] = state.current[sec] if continuing and j == lo else before + rank[j] - int(continuing)
        viewings[sec] = before + (hi - lo) - int(continuing)
    last = int(viewing[-1])
    if last == 0:
        current.update(state.current)
    for j in np.flatnonzero(pairs[:, 1] == last).tolist():
        current[int(pairs[j, 0])] = int(pair_pass[j])
    passes = pair_pass[inverse.reshape(-1)]
    return passes, SeekState(int(t[-1]), viewings, current)


def _continue_viewing(t: np.ndarray, second: np.ndarray, state: SeekState) -> tuple[np.ndarray, SeekState]:
    """assign_passes without a seek in these frames (the common case at ingest): each second
    keeps its pass in the current viewing, or is newly reached by it."""
    viewings = dict(state.viewings)
    current = dict(state.current)
    seconds, inverse = np.unique(second, return_inverse=True)
    pass_of = np.empty(len(seconds), dtype=np.int64)
    for j, sec in enumerate(seconds.tolist()):
        if sec not in current:
            current[sec] = viewings.get(sec, 0)
            viewings[sec] = current[sec] + 1
        pass_of[j] = current[sec]
    return pass_of[inverse.reshape(-1)], SeekState(int(t[-1]), viewings, current)


def rollup_session(
    session_id: str,
    frames: FrameArrays,
    config: MetricConfig = DEFAULT_CONFIG,
    allowed: Iterable[str] | None = None,
    state: SeekState | None = None,
) -> tuple[list[SecondRollup], SeekState]:
    """Roll a session's frames (any order; sorted by (seq, index) here) up per second and pass.

    For ingest, pass the state returned for the previous batch and merge the new rows into the
    stored ones with `combine`; the result equals rolling up all frames at once.
    """
    order = np.lexsort((frames.index, frames.seq))
    frames = frames.take(order)
    passes, state = assign_passes(frames.video_time_ms, config, state)
    if len(frames) == 0:
        return [], state
    m = frame_metrics(frames, config, allowed)
    return _rows((session_id,), np.zeros(len(frames), dtype=np.int64), frames, passes, m), state


def rollup_group(
    items: Sequence[tuple[str, FrameArrays, Iterable[str] | None, SeekState | None]],
    config: MetricConfig = DEFAULT_CONFIG,
) -> tuple[list[SecondRollup], list[SeekState]]:
    """rollup_session for several sessions at once: (session id, frames, allowed, state) each.

    The same rows and states as one rollup_session call per item, with the per-frame metrics
    and the sums computed once per set of allowed emotions instead of once per session (what a
    group commit of many sessions' batches needs).
    """
    if not items:
        return [], []
    parts = [frames.take(np.lexsort((frames.index, frames.seq))) for _, frames, _, _ in items]
    bounds = np.concatenate(([0], np.cumsum([len(f) for f in parts]))).astype(np.int64)
    return rollup_sessions([item[0] for item in items], bounds, _concat(parts),
                           [item[2] for item in items], [item[3] for item in items], config)


def rollup_sessions(
    names: Sequence[str],
    bounds: np.ndarray,
    frames: FrameArrays,
    allowed: Sequence[Iterable[str] | None],
    states: Sequence[SeekState | None],
    config: MetricConfig = DEFAULT_CONFIG,
) -> tuple[list[SecondRollup], list[SeekState]]:
    """rollup_group on frames already together: session i's frames are frames[bounds[i]:bounds[i + 1]],
    in (seq, index) order. Ingest calls this with one group commit's frames, decoded at once."""
    times = frames.video_time_ms.tolist()
    passes = np.empty(len(times), dtype=np.int64)
    new_states: list[SeekState] = []
    by_allowed: dict[frozenset[str] | None, list[int]] = {}
    for i, state in enumerate(states):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        session_passes, new_state = _passes(times[lo:hi], config, state)
        passes[lo:hi] = session_passes
        new_states.append(new_state)
        key = None if allowed[i] is None else frozenset(allowed[i])  # type: ignore[arg-type]
        by_allowed.setdefault(key, []).append(i)
    session_of = np.repeat(np.arange(len(names), dtype=np.int64), np.diff(bounds))
    rows: list[SecondRollup] = []
    for key, sessions in by_allowed.items():
        if len(by_allowed) == 1:
            part, part_sessions, part_passes = frames, session_of, passes
        else:
            mask = np.isin(session_of, sessions)
            part, part_sessions, part_passes = frames.take(mask), session_of[mask], passes[mask]
        if len(part):
            rows += _rows(names, part_sessions, part, part_passes, frame_metrics(part, config, key))
    return sorted(rows, key=lambda r: r.key), new_states


def _passes(times: list[int], config: MetricConfig, state: SeekState | None) -> tuple[Sequence[int] | np.ndarray, SeekState]:
    """assign_passes for one session's new frames, in plain Python when they hold no seek (the
    usual batch: a few frames, for which numpy's per-call cost dominates). Same results."""
    state = state or SeekState()
    if not times:
        return [], state
    prev = times[0] if state.last_video_time_ms is None else state.last_video_time_ms
    for t in times:
        if t < prev - config.seek_tolerance_ms:
            return assign_passes(np.asarray(times, dtype=np.int64), config, state)
        prev = t
    viewings = RunMap.of(state.viewings)
    current = RunMap.of(state.current)
    out = []
    last_sec, last_pass = None, 0
    for t in times:
        sec = t // 1000
        if sec != last_sec:  # frames come a few per second: look each second up once
            p = current.get(sec)
            if p is None:
                p = viewings.get(sec, 0)
                current.set(sec, p)
                viewings.set(sec, p + 1)
            last_sec, last_pass = sec, p
        out.append(last_pass)
    return out, SeekState(times[-1], viewings, current)


def _concat(parts: Sequence[FrameArrays]) -> FrameArrays:
    names = ("seq", "index", "video_time_ms", "face_present", "probs", "yaw", "pitch")
    return FrameArrays(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


def _rows(names: Sequence[str], session_of: np.ndarray, frames: FrameArrays, passes: np.ndarray,
          m: FrameMetrics) -> list[SecondRollup]:
    """Sums and counts per (session, second, pass) of frames with their metrics and passes."""
    keys, inverse = np.unique(np.stack([session_of, frames.video_time_ms // 1000, passes], axis=1), axis=0,
                              return_inverse=True)
    inverse = inverse.reshape(-1)
    k = len(keys)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=mask.astype(np.float64), minlength=k).astype(np.int64)

    def total(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = ~np.isnan(values)
        return np.bincount(inverse, weights=np.where(ok, values, 0.0), minlength=k), count(ok)

    emo = [total(m.probs[:, i]) for i in range(N_EMOTIONS)]
    summed = {name: total(getattr(m, name)) for name in SUMMED}
    n_frames = count(np.ones(len(frames), dtype=bool))
    with_face = count(frames.face_present)
    attentive = count(m.attention == 1.0)
    pose_known = count(~np.isnan(m.attention))
    rows = []
    for j in range(k):
        extra: dict[str, float | int] = {}
        for name, (s, c) in summed.items():
            extra[f"{name}_sum"] = float(s[j])
            extra[f"{name}_frames"] = int(c[j])
        rows.append(
            SecondRollup(
                session_id=names[int(keys[j, 0])],
                second=int(keys[j, 1]),
                pass_index=int(keys[j, 2]),
                frames=int(n_frames[j]),
                frames_with_face=int(with_face[j]),
                attentive=int(attentive[j]),
                pose_known=int(pose_known[j]),
                emotion_sums=tuple(float(s[j]) for s, _ in emo),
                emotion_frames=tuple(int(c[j]) for _, c in emo),
                **extra,  # type: ignore[arg-type]
            )
        )
    return rows


_COUNTS = tuple(f.name for f in fields(SecondRollup) if f.name not in ("session_id", "second", "pass_index"))


def _add(a: SecondRollup, b: SecondRollup) -> SecondRollup:
    changes: dict[str, object] = {}
    for name in _COUNTS:
        x, y = getattr(a, name), getattr(b, name)
        changes[name] = tuple(p + q for p, q in zip(x, y)) if isinstance(x, tuple) else x + y
    return replace(a, **changes)  # type: ignore[arg-type]


def combine(rollups: Iterable[SecondRollup]) -> list[SecondRollup]:
    """Merge rows with the same (session, second, pass) by adding their sums and counts."""
    merged: dict[tuple[str, int, int], SecondRollup] = {}
    for row in rollups:
        old = merged.get(row.key)
        merged[row.key] = row if old is None else _add(old, row)
    return [merged[key] for key in sorted(merged)]


def select_passes(rollups: Iterable[SecondRollup], passes: int | str = 0) -> list[SecondRollup]:
    """Rows of one pass (0: first viewing, the default), or "all" passes merged per second."""
    if passes == "all":
        return combine(replace(r, pass_index=0) for r in rollups)
    if not isinstance(passes, int) or passes < 0:
        raise ValueError(f'passes must be a pass index >= 0 or "all", got {passes!r}')
    return [r for r in rollups if r.pass_index == passes]


@dataclass(frozen=True, slots=True, eq=False)
class ViewerSeconds:
    """Each viewer's mean of each metric per video second: arrays (viewers, seconds).

    A viewer is a session (one viewing of the video). NaN: not watched, no frames behind
    the metric, or an emotion the viewer withheld.
    """

    sessions: tuple[str, ...]
    seconds: np.ndarray  # consecutive video seconds
    watched: np.ndarray  # bool (viewers, seconds): the viewer has frames in that second
    means: Mapping[str, np.ndarray]  # metric -> (viewers, seconds)


# A rollup row's value fields, in storage order (the rollups table's columns after the key).
VALUE_FIELDS: tuple[str, ...] = (
    "frames", "frames_with_face", "attentive", "pose_known",
    *(f"{name}_{kind}" for name in (*EMOTIONS, *SUMMED) for kind in ("sum", "frames")),
)
_FIELD = {name: i for i, name in enumerate(VALUE_FIELDS)}


@dataclass(frozen=True, slots=True, eq=False)
class RollupColumns:
    """Rollup rows as columns (n rows): how large selections reach the curves without one
    object per row. Any function taking rollup rows takes these too."""

    sessions: tuple[str, ...]  # session ids; `session` indexes them
    session: np.ndarray  # int64 (n,)
    second: np.ndarray  # int64 (n,)
    pass_index: np.ndarray  # int64 (n,)
    values: np.ndarray  # float64 (n, len(VALUE_FIELDS))

    def __len__(self) -> int:
        return len(self.second)

    @classmethod
    def from_rows(cls, rows: Iterable[SecondRollup]) -> RollupColumns:
        rows = list(rows)
        sessions = tuple(sorted({r.session_id for r in rows}))
        code = {s: i for i, s in enumerate(sessions)}
        values = np.array([
            (r.frames, r.frames_with_face, r.attentive, r.pose_known,
             *(v for pair in zip(r.emotion_sums, r.emotion_frames) for v in pair),
             *(getattr(r, f"{name}_{kind}") for name in SUMMED for kind in ("sum", "frames")))
            for r in rows], dtype=np.float64).reshape(len(rows), len(VALUE_FIELDS))
        return cls(sessions, np.fromiter((code[r.session_id] for r in rows), np.int64, len(rows)),
                   np.fromiter((r.second for r in rows), np.int64, len(rows)),
                   np.fromiter((r.pass_index for r in rows), np.int64, len(rows)), values)

    def take(self, which: np.ndarray) -> RollupColumns:
        return RollupColumns(self.sessions, self.session[which], self.second[which], self.pass_index[which],
                             self.values[which])

    def field(self, name: str) -> np.ndarray:
        return self.values[:, _FIELD[name]]

    def totals(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(sums, frames) behind a metric's mean in each row."""
        if metric == "attention":
            return self.field("attentive"), self.field("pose_known")
        return self.field(f"{metric}_sum"), self.field(f"{metric}_frames")

    def with_sessions(self, keep: Iterable[str]) -> RollupColumns:
        wanted = set(keep)
        return self.take(np.isin(self.session, [i for i, s in enumerate(self.sessions) if s in wanted]))


Rollups = Sequence[SecondRollup] | RollupColumns


def as_columns(rollups: Rollups) -> RollupColumns:
    return rollups if isinstance(rollups, RollupColumns) else RollupColumns.from_rows(rollups)


def select_pass_columns(c: RollupColumns, passes: int | str = 0) -> RollupColumns:
    """select_passes on columns: one pass, or "all" passes summed per (session, second) as pass 0."""
    if passes != "all":
        if not isinstance(passes, int) or passes < 0:
            raise ValueError(f'passes must be a pass index >= 0 or "all", got {passes!r}')
        return c.take(c.pass_index == passes)
    keys, inverse = np.unique(np.stack([c.session, c.second], axis=1).reshape(-1, 2), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    values = np.zeros((len(keys), len(VALUE_FIELDS)))
    np.add.at(values, inverse, c.values)
    return RollupColumns(c.sessions, keys[:, 0], keys[:, 1], np.zeros(len(keys), dtype=np.int64), values)


def per_viewer_second_means(
    rollups: Rollups,
    passes: int | str = 0,
    start_s: int | None = None,
    end_s: int | None = None,
    metrics: Iterable[str] = METRICS,
) -> ViewerSeconds:
    """Per viewer and second, sum / frames of each metric over the selected pass(es).

    Seconds run from `start_s` (inclusive) to `end_s` (exclusive), by default over the
    seconds present in the rows.
    """
    c = select_pass_columns(as_columns(rollups), passes)
    keep = c.field("frames") > 0
    if start_s is not None:
        keep &= c.second >= start_s
    if end_s is not None:
        keep &= c.second < end_s
    c = c.take(keep)
    present = np.unique(c.session)
    sessions = tuple(c.sessions[i] for i in present)  # c.sessions is sorted, so these are too
    if start_s is None:
        start_s = int(c.second.min()) if len(c) else 0
    if end_s is None:
        end_s = int(c.second.max()) + 1 if len(c) else start_s
    seconds = np.arange(start_s, max(start_s, end_s), dtype=np.int64)
    shape = (len(sessions), len(seconds))
    vi = np.searchsorted(present, c.session)
    si = c.second - start_s
    watched = np.zeros(shape, dtype=bool)
    watched[vi, si] = True
    flat = vi * len(seconds) + si
    size = len(sessions) * len(seconds)
    means: dict[str, np.ndarray] = {}
    for metric in metrics:
        sums, counts = c.totals(metric)
        s = np.bincount(flat, weights=sums, minlength=size).reshape(shape)
        n = np.bincount(flat, weights=counts, minlength=size).reshape(shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[metric] = np.where(n > 0, s / n, np.nan)
    return ViewerSeconds(sessions, seconds, watched, means)

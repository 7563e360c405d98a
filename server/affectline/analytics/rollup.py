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
    MetricConfig,
    frame_metrics,
)
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
    keys, inverse = np.unique(np.stack([frames.video_time_ms // 1000, passes], axis=1), axis=0, return_inverse=True)
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
                session_id=session_id,
                second=int(keys[j, 0]),
                pass_index=int(keys[j, 1]),
                frames=int(n_frames[j]),
                frames_with_face=int(with_face[j]),
                attentive=int(attentive[j]),
                pose_known=int(pose_known[j]),
                emotion_sums=tuple(float(s[j]) for s, _ in emo),
                emotion_frames=tuple(int(c[j]) for _, c in emo),
                **extra,  # type: ignore[arg-type]
            )
        )
    return rows, state


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


def per_viewer_second_means(
    rollups: Sequence[SecondRollup],
    passes: int | str = 0,
    start_s: int | None = None,
    end_s: int | None = None,
    metrics: Iterable[str] = METRICS,
) -> ViewerSeconds:
    """Per viewer and second, sum / frames of each metric over the selected pass(es).

    Seconds run from `start_s` (inclusive) to `end_s` (exclusive), by default over the
    seconds present in the rows.
    """
    rows = [
        r for r in select_passes(rollups, passes)
        if (start_s is None or r.second >= start_s) and (end_s is None or r.second < end_s) and r.frames > 0
    ]
    sessions = tuple(sorted({r.session_id for r in rows}))
    if start_s is None:
        start_s = min((r.second for r in rows), default=0)
    if end_s is None:
        end_s = max((r.second + 1 for r in rows), default=start_s)
    seconds = np.arange(start_s, max(start_s, end_s), dtype=np.int64)
    shape = (len(sessions), len(seconds))
    row_of = {s: i for i, s in enumerate(sessions)}
    vi = np.fromiter((row_of[r.session_id] for r in rows), np.int64, len(rows))
    si = np.fromiter((r.second - start_s for r in rows), np.int64, len(rows))
    watched = np.zeros(shape, dtype=bool)
    watched[vi, si] = True
    flat = vi * len(seconds) + si
    size = len(sessions) * len(seconds)
    sums, counts = _totals(rows, tuple(metrics))
    means: dict[str, np.ndarray] = {}
    for j, metric in enumerate(metrics):
        s = np.bincount(flat, weights=sums[:, j], minlength=size).reshape(shape)
        c = np.bincount(flat, weights=counts[:, j], minlength=size).reshape(shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[metric] = np.where(c > 0, s / c, np.nan)
    return ViewerSeconds(sessions, seconds, watched, means)


def _totals(rows: Sequence[SecondRollup], metrics: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(sums, frames) of each metric for each row: two arrays (rows, metrics)."""
    n = len(rows)
    sums = np.zeros((n, len(metrics)))
    counts = np.zeros((n, len(metrics)))
    emo_sums = np.array([r.emotion_sums for r in rows], dtype=np.float64).reshape(n, N_EMOTIONS)
    emo_frames = np.array([r.emotion_frames for r in rows], dtype=np.float64).reshape(n, N_EMOTIONS)
    for j, metric in enumerate(metrics):
        if metric in EMOTIONS:
            sums[:, j] = emo_sums[:, EMOTIONS.index(metric)]
            counts[:, j] = emo_frames[:, EMOTIONS.index(metric)]
        else:
            sum_field, count_field = ("attentive", "pose_known") if metric == "attention" else (
                f"{metric}_sum", f"{metric}_frames")
            sums[:, j] = np.fromiter((getattr(r, sum_field) for r in rows), np.float64, n)
            counts[:, j] = np.fromiter((getattr(r, count_field) for r in rows), np.float64, n)
    return sums, counts

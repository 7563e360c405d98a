"""Per-session summaries (one per viewer and video): the unit of A/B tests and norms."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from affectline.analytics.rollup import METRICS, SecondRollup, select_passes
from affectline.storage.records import EMOTIONS


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """Frame-weighted means of a session's metrics over the selected pass (NaN: undefined)."""

    session_id: str
    seconds_watched: int
    frames: int
    frames_with_face: int
    means: dict[str, float]  # metric (METRICS) -> mean; "attention" is the share of time attentive
    dominant_emotion: str | None  # highest mean probability among allowed emotions
    dominant_expression: str | None  # the same, neutral left out

    @property
    def attention_share(self) -> float:
        return self.means["attention"]

    @property
    def sentiment(self) -> float:
        return self.means["sentiment"]

    def metric(self, name: str) -> float:
        if name == "attention_share":
            name = "attention"
        return self.means[name]


def summarize_session(session_id: str, rollups: Iterable[SecondRollup], passes: int | str = 0) -> SessionSummary:
    """Summarise one session from its rollup rows (pass 0, the first viewing, by default)."""
    rows = [r for r in select_passes(rollups, passes) if r.session_id == session_id]
    means: dict[str, float] = {}
    for metric in METRICS:
        total = [r.total(metric) for r in rows]
        n = sum(c for _, c in total)
        means[metric] = sum(s for s, _ in total) / n if n else math.nan

    def dominant(names: Iterable[str]) -> str | None:
        scored = [(means[e], e) for e in names if not math.isnan(means[e])]
        return max(scored, key=lambda pair: pair[0])[1] if scored else None  # ties: EMOTIONS order

    return SessionSummary(
        session_id=session_id,
        seconds_watched=len({r.second for r in rows if r.frames}),
        frames=sum(r.frames for r in rows),
        frames_with_face=sum(r.frames_with_face for r in rows),
        means=means,
        dominant_emotion=dominant(EMOTIONS),
        dominant_expression=dominant(e for e in EMOTIONS if e != "neutral"),
    )


def summarize_sessions(rollups: Iterable[SecondRollup], passes: int | str = 0) -> list[SessionSummary]:
    """One summary per session with frames in the selected pass(es), sorted by session id."""
    by_session: dict[str, list[SecondRollup]] = defaultdict(list)
    for r in rollups:
        by_session[r.session_id].append(r)
    summaries = (summarize_session(s, by_session[s], passes) for s in sorted(by_session))
    return [s for s in summaries if s.frames > 0]

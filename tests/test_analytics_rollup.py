"""Per session-second rollups: exact sums, seeking passes, incremental ingest, summaries."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from affectline.analytics import (
    FrameArrays,
    MetricConfig,
    assign_passes,
    combine,
    frame_arrays,
    per_viewer_second_means,
    rollup_session,
    select_passes,
    summarize_session,
    summarize_sessions,
)
from affectline.storage.records import EMOTIONS, FrameRecord

P_HAPPY = (0.0, 0.0, 0.0, 0.5, 0.0, 0.25, 0.25)
P_SAD = (0.25, 0.0, 0.0, 0.0, 0.25, 0.0, 0.5)
P_FEAR = (0.0, 0.0, 0.75, 0.125, 0.0, 0.0, 0.125)


def frame(seq: int, index: int, t: int, probs=None, yaw=None) -> FrameRecord:
    return FrameRecord(seq, index, t, None, probs is not None, probs, head_yaw_deg=yaw, smoothed=probs)


SESSION = [
    frame(0, 0, 0, P_HAPPY, 0.0),  # attentive
    frame(0, 1, 500, P_SAD, 45.0),  # looking away
    frame(0, 2, 999),  # no face
    frame(1, 0, 1000, P_FEAR),  # no pose: attention unknown
]


def test_rollup_rows_are_exact_sums_and_counts() -> None:
    rows, _ = rollup_session("s1", frame_arrays(SESSION))
    assert [(r.second, r.pass_index) for r in rows] == [(0, 0), (1, 0)]
    r0, r1 = rows
    assert (r0.frames, r0.frames_with_face, r0.attentive, r0.pose_known) == (3, 2, 1, 3)
    assert r0.emotion_sums == tuple(a + b for a, b in zip(P_HAPPY, P_SAD))
    assert r0.emotion_frames == (2,) * 7
    assert (r0.valence_sum, r0.valence_frames) == (0.0, 2)
    assert (r0.expressiveness_sum, r0.expressiveness_frames) == (1.25, 2)
    assert (r0.engagement_sum, r0.engagement_frames) == (0.75, 3)  # no-face frame: engagement 0
    assert (r0.sentiment_sum, r0.sentiment_frames) == (0.5, 1)
    assert (r0.confidence_sum, r0.confidence_frames) == (1.0, 2)
    assert (r1.frames, r1.attentive, r1.pose_known, r1.engagement_frames) == (1, 0, 0, 0)
    assert (r1.sentiment_sum, r1.sentiment_frames) == (-0.625, 1)
    # frame order is (seq, index), not the order given
    shuffled, _ = rollup_session("s1", frame_arrays(SESSION[::-1]))
    assert shuffled == rows


def test_opt_out_rows_carry_no_withheld_emotion() -> None:
    rows, _ = rollup_session("s1", frame_arrays(SESSION), allowed={"happy", "neutral"})
    r0 = rows[0]
    assert r0.emotion_frames == (0, 0, 0, 2, 0, 0, 2)
    assert r0.emotion_sums[EMOTIONS.index("sad")] == 0.0
    assert r0.valence_frames == 0 and r0.confidence_frames == 0
    assert (r0.engagement_sum, r0.engagement_frames) == (0.75, 3)


def test_seeking_back_starts_a_new_pass_per_second() -> None:
    # watch 0-2.6 s, jump back to 0.9 s, watch to 4 s, jump back to 3.0 s, go on
    t = np.array([0, 500, 990, 1500, 2100, 2600, 900, 1200, 1800, 2500, 3100, 3990, 3000, 4100])
    passes, state = assign_passes(t)
    assert passes.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0]
    # second 3 was first seen after the first seek: its first viewing is pass 0
    assert state.viewings == {0: 2, 1: 2, 2: 2, 3: 2, 4: 1}
    # small backwards jitter (within the tolerance) is not a seek
    assert assign_passes(np.array([990, 1010, 995, 1030]))[0].tolist() == [0, 0, 0, 0]
    assert assign_passes(np.array([990, 1010, 995]), MetricConfig(seek_tolerance_ms=10))[0].tolist() == [0, 0, 1]
    # carried state gives the same passes as one call, at every split point
    for cut in range(len(t) + 1):
        p1, s1 = assign_passes(t[:cut])
        p2, s2 = assign_passes(t[cut:], state=s1)
        assert np.concatenate([p1, p2]).tolist() == passes.tolist() and s2 == state


def test_skipped_seconds_have_no_row() -> None:
    rows, _ = rollup_session("s1", frame_arrays([frame(0, 0, 0, P_HAPPY, 0.0), frame(0, 1, 5000, P_HAPPY, 0.0)]))
    assert [r.second for r in rows] == [0, 5]
    vs = per_viewer_second_means(rows)
    assert vs.seconds.tolist() == [0, 1, 2, 3, 4, 5]
    assert vs.watched.tolist() == [[True, False, False, False, False, True]]
    assert np.isnan(vs.means["happy"][0, 1:5]).all()


def random_session(rng: np.random.Generator, n: int = 600) -> FrameArrays:
    t = np.cumsum(rng.integers(20, 45, n))
    t[n // 3 :] -= 7000  # a seek back
    t[2 * n // 3 :] += 9000  # a skip forward
    probs = rng.integers(0, 64, (n, 7)) / 64.0  # dyadic: sums are exact in any order
    face = rng.random(n) > 0.2
    probs[~face] = np.nan
    yaw = np.where(rng.random(n) > 0.1, rng.integers(-60, 60, n).astype(float), np.nan)
    seq, index = np.divmod(np.arange(n), 10)
    return FrameArrays(seq, index, t, face, probs, yaw)


def test_incremental_rollup_then_combine_equals_whole() -> None:
    rng = np.random.default_rng(7)
    frames = random_session(rng)
    whole, final = rollup_session("s", frames)
    assert any(r.pass_index == 1 for r in whole)
    state = None
    parts = []
    for lo in range(0, len(frames), 70):  # batches landing one after another
        rows, state = rollup_session("s", frames.take(np.arange(lo, min(lo + 70, len(frames)))), state=state)
        parts += rows
    assert combine(parts) == whole and state == final
    # combining rows of different sessions keeps them apart
    other, _ = rollup_session("t", frames)
    assert combine(other + whole) == whole + other


def test_select_passes_and_per_viewer_means() -> None:
    t = [0, 400, 800, 200, 600]  # seek back inside second 0
    frames = [frame(0, i, ti, P_HAPPY if i < 3 else P_SAD, 0.0) for i, ti in enumerate(t)]
    rows, _ = rollup_session("s", frame_arrays(frames))
    assert [(r.second, r.pass_index, r.frames) for r in rows] == [(0, 0, 3), (0, 1, 2)]
    assert select_passes(rows, 1)[0].frames == 2
    merged = select_passes(rows, "all")
    assert len(merged) == 1 and merged[0].frames == 5
    happy = EMOTIONS.index("happy")
    assert per_viewer_second_means(rows).means["happy"][0, 0] == 0.5
    assert per_viewer_second_means(rows, passes=1).means["happy"][0, 0] == 0.0
    assert per_viewer_second_means(rows, passes="all").means["happy"][0, 0] == pytest.approx(1.5 / 5)
    assert merged[0].emotion_sums[happy] == 1.5
    with pytest.raises(ValueError):
        select_passes(rows, "last")


def test_session_summary() -> None:
    rows, _ = rollup_session("s1", frame_arrays(SESSION))
    s = summarize_session("s1", rows)
    assert (s.seconds_watched, s.frames, s.frames_with_face) == (2, 4, 3)
    assert s.means["engagement"] == 0.75 / 3
    assert s.attention_share == 1 / 3
    assert s.sentiment == (0.5 - 0.625) / 2
    assert s.means["happy"] == pytest.approx((0.5 + 0.0 + 0.125) / 3)
    assert s.dominant_emotion == "neutral"  # 0.875/3 beats fear 0.75/3
    assert s.dominant_expression == "fear"
    opted, _ = rollup_session("s2", frame_arrays(SESSION), allowed={"happy", "sad", "neutral"})
    o = summarize_session("s2", opted)
    assert math.isnan(o.means["fear"]) and math.isnan(o.sentiment)
    assert o.dominant_expression == "happy"
    both = summarize_sessions(rows + opted)
    assert [x.session_id for x in both] == ["s1", "s2"]
    assert summarize_sessions(rows, passes=1) == []
    assert replace(s, means=dict(s.means)) == s


def test_run_map_behaves_as_the_dict_it_stands_for() -> None:
    from affectline.analytics.run_map import RunMap, to_runs

    rng = np.random.default_rng(3)
    plain: dict[int, int] = {}
    runs = RunMap()
    for _ in range(400):
        # Mostly the next second (a viewing going on), sometimes a second earlier (after a seek).
        key = (max(plain) + 1 if plain else 0) if rng.random() < 0.8 else int(rng.integers(0, 60))
        value = int(rng.integers(0, 2))
        plain[key] = value
        runs.set(key, value)
        assert runs == plain and len(runs) == len(plain)
    assert dict(RunMap(to_runs(plain))) == plain and to_runs(runs) == to_runs(plain)
    assert runs.get(10_000) is None and 10_000 not in runs and runs.get(-1, 7) == 7
    assert RunMap([[0, 59, 1]]).runs() == [[0, 59, 1]] and len(RunMap([[0, 59, 1], [70, 70, 2]])) == 61


def test_ingest_pass_assignment_equals_assign_passes_batch_by_batch() -> None:
    from affectline.analytics.definitions import DEFAULT_CONFIG
    from affectline.analytics.rollup import SeekState, _passes, assign_passes
    from affectline.storage.rollup_ingest import decode_state, encode_state

    rng = np.random.default_rng(5)
    for _ in range(30):
        t, times = 0, []
        for _ in range(300):
            t += 33 if rng.random() > 0.02 else -int(rng.integers(100, 20_000))  # a seek back now and then
            times.append(max(t, 0))
        whole, _ = assign_passes(np.array(times))
        state, got = SeekState(), []
        for lo in range(0, len(times), 10):  # batches of 10, the state stored and read back between them
            passes, state = _passes(times[lo:lo + 10], DEFAULT_CONFIG, state)
            got += list(passes)
            state = decode_state(encode_state(state, lo))[0]
        assert got == whole.tolist()

"""Per-frame metrics on small exact examples (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import pytest

from affectline.analytics import FrameArrays, MetricConfig, frame_arrays, frame_metrics
from affectline.storage.records import EMOTIONS, FrameRecord

#            angry disgust fear happy sad surprise neutral
P_HAPPY = (0.0, 0.0, 0.0, 0.5, 0.0, 0.25, 0.25)
P_SAD = (0.25, 0.0, 0.0, 0.0, 0.25, 0.0, 0.5)
P_FEAR = (0.0, 0.0, 0.75, 0.125, 0.0, 0.0, 0.125)
NAN7 = (np.nan,) * 7


def arrays(probs, face, yaw, pitch=None) -> FrameArrays:
    n = len(face)
    return FrameArrays(np.zeros(n), np.arange(n), np.arange(n) * 33, face, probs, yaw, pitch)


def test_three_frames_exact() -> None:
    # frame 0: frontal (yaw 10, pitch 5) -> attentive; frame 1: yaw 40 -> not attentive;
    # frame 2: face present, no pose -> unknown; frame 3: no face -> not attentive.
    nan = np.nan
    probs = [P_HAPPY, P_SAD, P_FEAR, NAN7]
    m = frame_metrics(arrays(probs, [True, True, True, False], [10, 40, nan, nan], [5, 0, nan, nan]))
    np.testing.assert_array_equal(m.attention, [1.0, 0.0, np.nan, 0.0])
    # valence = happy - (angry + disgust + fear + sad); surprise and neutral weigh 0
    np.testing.assert_array_equal(m.valence, [0.5, -0.5, 0.125 - 0.75, np.nan])
    np.testing.assert_array_equal(m.expressiveness, [0.75, 0.5, 0.875, np.nan])
    # engagement = attention x expressiveness; 0 without a face; NaN for unknown attention
    np.testing.assert_array_equal(m.engagement, [0.75, 0.0, np.nan, 0.0])
    np.testing.assert_array_equal(m.confidence, [0.5, 0.5, 0.75, np.nan])
    # sentiment: valence on face frames not known to be inattentive
    np.testing.assert_array_equal(m.sentiment, [0.5, np.nan, -0.625, np.nan])
    np.testing.assert_array_equal(m.metric("happy"), [0.5, 0.0, 0.125, np.nan])


def test_pitch_bound_and_missing_pitch() -> None:
    m = frame_metrics(arrays([P_HAPPY] * 4, [True] * 4, [-30, 30.5, 0, 0], [-20, 0, 21, np.nan]))
    # |yaw| <= 30 and |pitch| <= 20 are inclusive; no pitch is judged on yaw alone
    np.testing.assert_array_equal(m.attention, [1.0, 0.0, 0.0, 1.0])
    m = frame_metrics(arrays([P_HAPPY], [True], [35]), MetricConfig(max_abs_yaw_deg=40))
    assert m.attention[0] == 1.0


def test_custom_valence_weights() -> None:
    cfg = MetricConfig(valence_weights=(-1, -1, -1, 1, -1, 0.5, 0))
    m = frame_metrics(arrays([P_HAPPY], [True], [0]), cfg)
    assert m.valence[0] == 0.5 + 0.5 * 0.25
    with pytest.raises(ValueError):
        MetricConfig(valence_weights=(1.0,) * 6)
    with pytest.raises(ValueError):
        MetricConfig(valence_weights=(-2, 0, 0, 1, 0, 0, 0))


def test_opt_out_hides_the_emotion_and_metrics_that_read_it() -> None:
    a = arrays([P_HAPPY, P_SAD], [True, True], [0, 0])
    m = frame_metrics(a, allowed={"happy", "surprise", "neutral"})
    assert np.isnan(m.metric("sad")).all() and np.isnan(m.metric("angry")).all()
    np.testing.assert_array_equal(m.metric("happy"), [0.5, 0.0])
    # valence reads angry/disgust/fear/sad; confidence reads all seven: not reported
    assert np.isnan(m.valence).all() and np.isnan(m.sentiment).all() and np.isnan(m.confidence).all()
    # expressiveness and engagement read only neutral; attention reads no emotion
    np.testing.assert_array_equal(m.expressiveness, [0.75, 0.5])
    np.testing.assert_array_equal(m.engagement, [0.75, 0.5])
    m = frame_metrics(a, allowed=set(EMOTIONS) - {"neutral"})
    assert np.isnan(m.engagement).all() and np.isnan(m.expressiveness).all()
    np.testing.assert_array_equal(m.attention, [1.0, 1.0])
    with pytest.raises(ValueError):
        frame_metrics(a, allowed={"joy"})


def test_frame_arrays_prefer_smoothed() -> None:
    records = [
        FrameRecord(0, 0, 0, None, True, P_SAD, head_yaw_deg=5.0, smoothed=P_HAPPY),
        FrameRecord(0, 1, 33, None, True, P_SAD, head_yaw_deg=None),
        FrameRecord(0, 2, 66, None, False, None),
    ]
    a = frame_arrays(records)
    np.testing.assert_array_equal(a.probs[0], P_HAPPY)
    np.testing.assert_array_equal(a.probs[1], P_SAD)
    assert np.isnan(a.probs[2]).all() and np.isnan(a.yaw[1]) and np.isnan(a.pitch).all()
    raw = frame_arrays(records, MetricConfig(use_smoothed=False))
    np.testing.assert_array_equal(raw.probs[0], P_SAD)
    empty = frame_metrics(frame_arrays([]))
    assert empty.valence.shape == (0,) and empty.probs.shape == (0, 7)

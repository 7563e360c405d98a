"""The hot-path conversions give the same messages as the plain protobuf APIs."""

import random
from datetime import timezone

from google.protobuf.timestamp_pb2 import Timestamp

from affectline.services.proto_convert import add_frame_results, from_timestamp, scores_message, top_emotion
from affectline.storage.records import FrameRecord
from affectline.v1 import common_pb2, session_pb2


def test_from_timestamp_matches_to_datetime():
    rng = random.Random(0)
    for _ in range(1000):
        ts = Timestamp(seconds=rng.randrange(0, 4_000_000_000), nanos=rng.randrange(0, 1_000_000_000))
        assert from_timestamp(ts) == ts.ToDatetime(tzinfo=timezone.utc)
    assert from_timestamp(Timestamp(seconds=1, nanos=999)).microsecond == 0  # truncated, like ToDatetime


def test_frame_results_match_keyword_construction():
    probs = (0.1, 0.05, 0.05, 0.5, 0.1, 0.1, 0.1)
    smoothed = (0.2, 0.0, 0.0, 0.2, 0.4, 0.1, 0.1)
    frames = [
        FrameRecord(seq=3, index=0, video_time_ms=100, captured_at=None, face_present=True, probs=probs, smoothed=smoothed),
        FrameRecord(seq=3, index=1, video_time_ms=133, captured_at=None, face_present=False, probs=None),
        FrameRecord(seq=3, index=2, video_time_ms=166, captured_at=None, face_present=True, probs=probs),  # smoothing off
    ]
    response = session_pb2.PushCropsResponse()
    add_frame_results(frames, response)
    expected = [
        session_pb2.FrameResult(video_time_ms=100, face_present=True, scores=scores_message(probs),
                                smoothed_scores=scores_message(smoothed), top_emotion=common_pb2.EMOTION_SAD),
        session_pb2.FrameResult(video_time_ms=133, face_present=False),
        session_pb2.FrameResult(video_time_ms=166, face_present=True, scores=scores_message(probs),
                                smoothed_scores=scores_message(probs), top_emotion=common_pb2.EMOTION_HAPPY),
    ]
    assert list(response.results) == expected
    assert not response.results[1].HasField("scores")


def test_top_emotion_takes_the_first_of_a_tie():
    assert top_emotion((0.3, 0.3, 0.1, 0.1, 0.1, 0.05, 0.05)) == common_pb2.EMOTION_ANGRY
    assert top_emotion(None) == common_pb2.EMOTION_UNSPECIFIED

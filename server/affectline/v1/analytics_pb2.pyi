from affectline.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSessionTimelineRequest(_message.Message):
    __slots__ = ("session_id", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TimelineFrame(_message.Message):
    __slots__ = ("video_time_ms", "face_present", "scores", "top_emotion", "head_yaw_deg", "head_pitch_deg", "face_box_size", "smoothed_scores")
    VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FACE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TOP_EMOTION_FIELD_NUMBER: _ClassVar[int]
    HEAD_YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    HEAD_PITCH_DEG_FIELD_NUMBER: _ClassVar[int]
    FACE_BOX_SIZE_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_SCORES_FIELD_NUMBER: _ClassVar[int]
    video_time_ms: int
    face_present: bool
    scores: _common_pb2.EmotionScores
    top_emotion: _common_pb2.Emotion
    head_yaw_deg: float
    head_pitch_deg: float
    face_box_size: float
    smoothed_scores: _common_pb2.EmotionScores
    def __init__(self, video_time_ms: _Optional[int] = ..., face_present: _Optional[bool] = ..., scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ..., top_emotion: _Optional[_Union[_common_pb2.Emotion, str]] = ..., head_yaw_deg: _Optional[float] = ..., head_pitch_deg: _Optional[float] = ..., face_box_size: _Optional[float] = ..., smoothed_scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ...) -> None: ...

class GetSessionTimelineResponse(_message.Message):
    __slots__ = ("session_id", "video_id", "variant_id", "frames", "next_page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    video_id: str
    variant_id: str
    frames: _containers.RepeatedCompositeFieldContainer[TimelineFrame]
    next_page_token: str
    def __init__(self, session_id: _Optional[str] = ..., video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[TimelineFrame, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVideoTimelineRequest(_message.Message):
    __slots__ = ("video_id", "variant_id", "bucket_ms")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_id: str
    bucket_ms: int
    def __init__(self, video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., bucket_ms: _Optional[int] = ...) -> None: ...

class TimelineBucket(_message.Message):
    __slots__ = ("start_ms", "mean_scores", "viewers", "frames", "frames_with_face")
    START_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORES_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    start_ms: int
    mean_scores: _common_pb2.EmotionScores
    viewers: int
    frames: int
    frames_with_face: int
    def __init__(self, start_ms: _Optional[int] = ..., mean_scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ..., viewers: _Optional[int] = ..., frames: _Optional[int] = ..., frames_with_face: _Optional[int] = ...) -> None: ...

class GetVideoTimelineResponse(_message.Message):
    __slots__ = ("video_id", "variant_id", "bucket_ms", "sessions", "buckets")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_id: str
    bucket_ms: int
    sessions: int
    buckets: _containers.RepeatedCompositeFieldContainer[TimelineBucket]
    def __init__(self, video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., bucket_ms: _Optional[int] = ..., sessions: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[TimelineBucket, _Mapping]]] = ...) -> None: ...

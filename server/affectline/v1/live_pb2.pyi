import datetime

from affectline.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchLiveRequest(_message.Message):
    __slots__ = ("video_ids", "interval_ms")
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[str]
    interval_ms: int
    def __init__(self, video_ids: _Optional[_Iterable[str]] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class LiveSnapshot(_message.Message):
    __slots__ = ("at", "active_sessions", "frames_per_second", "videos", "window_s", "min_viewers")
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MIN_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    active_sessions: int
    frames_per_second: float
    videos: _containers.RepeatedCompositeFieldContainer[LiveVideo]
    window_s: int
    min_viewers: int
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_sessions: _Optional[int] = ..., frames_per_second: _Optional[float] = ..., videos: _Optional[_Iterable[_Union[LiveVideo, _Mapping]]] = ..., window_s: _Optional[int] = ..., min_viewers: _Optional[int] = ...) -> None: ...

class LiveVideo(_message.Message):
    __slots__ = ("video_id", "active_sessions", "variants", "frames_per_second", "seconds")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    active_sessions: int
    variants: _containers.RepeatedCompositeFieldContainer[LiveVariant]
    frames_per_second: float
    seconds: _containers.RepeatedCompositeFieldContainer[LiveSecond]
    def __init__(self, video_id: _Optional[str] = ..., active_sessions: _Optional[int] = ..., variants: _Optional[_Iterable[_Union[LiveVariant, _Mapping]]] = ..., frames_per_second: _Optional[float] = ..., seconds: _Optional[_Iterable[_Union[LiveSecond, _Mapping]]] = ...) -> None: ...

class LiveVariant(_message.Message):
    __slots__ = ("variant_id", "active_sessions")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    active_sessions: int
    def __init__(self, variant_id: _Optional[str] = ..., active_sessions: _Optional[int] = ...) -> None: ...

class LiveSecond(_message.Message):
    __slots__ = ("start", "viewers", "frames", "frames_with_face", "mean_scores", "suppressed")
    START_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORES_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    viewers: int
    frames: int
    frames_with_face: int
    mean_scores: _common_pb2.EmotionScores
    suppressed: bool
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., viewers: _Optional[int] = ..., frames: _Optional[int] = ..., frames_with_face: _Optional[int] = ..., mean_scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ..., suppressed: _Optional[bool] = ...) -> None: ...

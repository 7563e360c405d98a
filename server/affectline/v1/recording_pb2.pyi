import datetime

from affectline.v1 import session_pb2 as _session_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORDING_STATE_UNSPECIFIED: _ClassVar[RecordingState]
    RECORDING_STATE_UPLOADING: _ClassVar[RecordingState]
    RECORDING_STATE_ANALYSING: _ClassVar[RecordingState]
    RECORDING_STATE_STORING: _ClassVar[RecordingState]
    RECORDING_STATE_DONE: _ClassVar[RecordingState]
    RECORDING_STATE_FAILED: _ClassVar[RecordingState]
    RECORDING_STATE_CANCELLED: _ClassVar[RecordingState]
RECORDING_STATE_UNSPECIFIED: RecordingState
RECORDING_STATE_UPLOADING: RecordingState
RECORDING_STATE_ANALYSING: RecordingState
RECORDING_STATE_STORING: RecordingState
RECORDING_STATE_DONE: RecordingState
RECORDING_STATE_FAILED: RecordingState
RECORDING_STATE_CANCELLED: RecordingState

class RecordingMetadata(_message.Message):
    __slots__ = ("video_id", "variant_id", "viewer", "offset_ms", "total_bytes", "file_name", "content_type")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_id: str
    viewer: _session_pb2.ViewerDescriptor
    offset_ms: int
    total_bytes: int
    file_name: str
    content_type: str
    def __init__(self, video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., viewer: _Optional[_Union[_session_pb2.ViewerDescriptor, _Mapping]] = ..., offset_ms: _Optional[int] = ..., total_bytes: _Optional[int] = ..., file_name: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class AnalyzeRecordingRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: RecordingMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[RecordingMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class RecordingUpload(_message.Message):
    __slots__ = ("recording_id", "max_bytes", "upload_url", "max_chunk_bytes", "expires_at")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    max_bytes: int
    upload_url: str
    max_chunk_bytes: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, recording_id: _Optional[str] = ..., max_bytes: _Optional[int] = ..., upload_url: _Optional[str] = ..., max_chunk_bytes: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordingRef(_message.Message):
    __slots__ = ("recording_id",)
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    def __init__(self, recording_id: _Optional[str] = ...) -> None: ...

class RecordingProgress(_message.Message):
    __slots__ = ("bytes_received", "total_bytes", "frames_decoded", "frames_scored", "frames_expected", "percent", "eta_ms")
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SCORED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    bytes_received: int
    total_bytes: int
    frames_decoded: int
    frames_scored: int
    frames_expected: int
    percent: float
    eta_ms: int
    def __init__(self, bytes_received: _Optional[int] = ..., total_bytes: _Optional[int] = ..., frames_decoded: _Optional[int] = ..., frames_scored: _Optional[int] = ..., frames_expected: _Optional[int] = ..., percent: _Optional[float] = ..., eta_ms: _Optional[int] = ...) -> None: ...

class RecordingResult(_message.Message):
    __slots__ = ("session_id", "frames", "frames_with_face", "dominant_emotion", "viewer_id", "model", "first_video_time_ms", "last_video_time_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FIRST_VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    frames: int
    frames_with_face: int
    dominant_emotion: str
    viewer_id: str
    model: str
    first_video_time_ms: int
    last_video_time_ms: int
    def __init__(self, session_id: _Optional[str] = ..., frames: _Optional[int] = ..., frames_with_face: _Optional[int] = ..., dominant_emotion: _Optional[str] = ..., viewer_id: _Optional[str] = ..., model: _Optional[str] = ..., first_video_time_ms: _Optional[int] = ..., last_video_time_ms: _Optional[int] = ...) -> None: ...

class RecordingStatus(_message.Message):
    __slots__ = ("recording_id", "state", "progress", "result", "error_code", "error_message")
    RECORDING_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    recording_id: str
    state: RecordingState
    progress: RecordingProgress
    result: RecordingResult
    error_code: str
    error_message: str
    def __init__(self, recording_id: _Optional[str] = ..., state: _Optional[_Union[RecordingState, str]] = ..., progress: _Optional[_Union[RecordingProgress, _Mapping]] = ..., result: _Optional[_Union[RecordingResult, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

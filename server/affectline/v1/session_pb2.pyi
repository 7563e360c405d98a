import datetime

from affectline.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentRecord(_message.Message):
    __slots__ = ("notice_version", "consented_at", "scopes", "allowed_emotions")
    NOTICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSENTED_AT_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_EMOTIONS_FIELD_NUMBER: _ClassVar[int]
    notice_version: str
    consented_at: _timestamp_pb2.Timestamp
    scopes: _containers.RepeatedScalarFieldContainer[str]
    allowed_emotions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, notice_version: _Optional[str] = ..., consented_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., allowed_emotions: _Optional[_Iterable[str]] = ...) -> None: ...

class Demographics(_message.Message):
    __slots__ = ("age_band", "gender", "region")
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    age_band: str
    gender: str
    region: str
    def __init__(self, age_band: _Optional[str] = ..., gender: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class ViewerDescriptor(_message.Message):
    __slots__ = ("viewer_id", "consent", "demographics")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    DEMOGRAPHICS_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    consent: ConsentRecord
    demographics: Demographics
    def __init__(self, viewer_id: _Optional[str] = ..., consent: _Optional[_Union[ConsentRecord, _Mapping]] = ..., demographics: _Optional[_Union[Demographics, _Mapping]] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("video_id", "variant_id", "viewer", "client_public_key", "capture_fps", "frames_per_batch")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_id: str
    viewer: ViewerDescriptor
    client_public_key: bytes
    capture_fps: float
    frames_per_batch: int
    def __init__(self, video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., viewer: _Optional[_Union[ViewerDescriptor, _Mapping]] = ..., client_public_key: _Optional[bytes] = ..., capture_fps: _Optional[float] = ..., frames_per_batch: _Optional[int] = ...) -> None: ...

class CropSpec(_message.Message):
    __slots__ = ("width", "height", "channels", "pixel_format", "max_frames_per_batch", "model")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    channels: int
    pixel_format: str
    max_frames_per_batch: int
    model: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., pixel_format: _Optional[str] = ..., max_frames_per_batch: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ("session_id", "server_public_key", "hkdf_salt", "crop_spec", "expires_at", "session_token", "first_batch_in_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HKDF_SALT_FIELD_NUMBER: _ClassVar[int]
    CROP_SPEC_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FIRST_BATCH_IN_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    server_public_key: bytes
    hkdf_salt: bytes
    crop_spec: CropSpec
    expires_at: _timestamp_pb2.Timestamp
    session_token: str
    first_batch_in_ms: int
    def __init__(self, session_id: _Optional[str] = ..., server_public_key: _Optional[bytes] = ..., hkdf_salt: _Optional[bytes] = ..., crop_spec: _Optional[_Union[CropSpec, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_token: _Optional[str] = ..., first_batch_in_ms: _Optional[int] = ...) -> None: ...

class PushCropsRequest(_message.Message):
    __slots__ = ("session_id", "session_token", "seq", "nonce", "ciphertext")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    session_token: str
    seq: int
    nonce: bytes
    ciphertext: bytes
    def __init__(self, session_id: _Optional[str] = ..., session_token: _Optional[str] = ..., seq: _Optional[int] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class CropBatch(_message.Message):
    __slots__ = ("frames", "achieved_fps")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ACHIEVED_FPS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[CropFrame]
    achieved_fps: float
    def __init__(self, frames: _Optional[_Iterable[_Union[CropFrame, _Mapping]]] = ..., achieved_fps: _Optional[float] = ...) -> None: ...

class CropFrame(_message.Message):
    __slots__ = ("video_time_ms", "captured_at", "face_present", "crop", "head_yaw_deg", "head_pitch_deg", "face_box_size")
    VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    FACE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    HEAD_YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    HEAD_PITCH_DEG_FIELD_NUMBER: _ClassVar[int]
    FACE_BOX_SIZE_FIELD_NUMBER: _ClassVar[int]
    video_time_ms: int
    captured_at: _timestamp_pb2.Timestamp
    face_present: bool
    crop: bytes
    head_yaw_deg: float
    head_pitch_deg: float
    face_box_size: float
    def __init__(self, video_time_ms: _Optional[int] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., face_present: _Optional[bool] = ..., crop: _Optional[bytes] = ..., head_yaw_deg: _Optional[float] = ..., head_pitch_deg: _Optional[float] = ..., face_box_size: _Optional[float] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("video_time_ms", "face_present", "scores", "top_emotion", "smoothed_scores")
    VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FACE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TOP_EMOTION_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_SCORES_FIELD_NUMBER: _ClassVar[int]
    video_time_ms: int
    face_present: bool
    scores: _common_pb2.EmotionScores
    top_emotion: _common_pb2.Emotion
    smoothed_scores: _common_pb2.EmotionScores
    def __init__(self, video_time_ms: _Optional[int] = ..., face_present: _Optional[bool] = ..., scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ..., top_emotion: _Optional[_Union[_common_pb2.Emotion, str]] = ..., smoothed_scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ...) -> None: ...

class PushCropsResponse(_message.Message):
    __slots__ = ("seq", "duplicate", "results", "frames_accepted_total", "next_batch_in_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ACCEPTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_BATCH_IN_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    duplicate: bool
    results: _containers.RepeatedCompositeFieldContainer[FrameResult]
    frames_accepted_total: int
    next_batch_in_ms: int
    def __init__(self, seq: _Optional[int] = ..., duplicate: _Optional[bool] = ..., results: _Optional[_Iterable[_Union[FrameResult, _Mapping]]] = ..., frames_accepted_total: _Optional[int] = ..., next_batch_in_ms: _Optional[int] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id", "session_token", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    session_token: str
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., session_token: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id", "video_id", "variant_id", "frames_total", "frames_with_face", "mean_scores", "dominant_emotion", "first_video_time_ms", "last_video_time_ms", "started_at", "ended_at", "end_reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORES_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_EMOTION_FIELD_NUMBER: _ClassVar[int]
    FIRST_VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_VIDEO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    video_id: str
    variant_id: str
    frames_total: int
    frames_with_face: int
    mean_scores: _common_pb2.EmotionScores
    dominant_emotion: _common_pb2.Emotion
    first_video_time_ms: int
    last_video_time_ms: int
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    end_reason: str
    def __init__(self, session_id: _Optional[str] = ..., video_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., frames_total: _Optional[int] = ..., frames_with_face: _Optional[int] = ..., mean_scores: _Optional[_Union[_common_pb2.EmotionScores, _Mapping]] = ..., dominant_emotion: _Optional[_Union[_common_pb2.Emotion, str]] = ..., first_video_time_ms: _Optional[int] = ..., last_video_time_ms: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: SessionSummary
    def __init__(self, summary: _Optional[_Union[SessionSummary, _Mapping]] = ...) -> None: ...

import datetime

from affectline.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PassSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PASS_SELECTION_UNSPECIFIED: _ClassVar[PassSelection]
    PASS_SELECTION_FIRST: _ClassVar[PassSelection]
    PASS_SELECTION_REWATCHES: _ClassVar[PassSelection]
    PASS_SELECTION_ALL: _ClassVar[PassSelection]

class SegmentField(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_FIELD_UNSPECIFIED: _ClassVar[SegmentField]
    SEGMENT_FIELD_AGE_BAND: _ClassVar[SegmentField]
    SEGMENT_FIELD_GENDER: _ClassVar[SegmentField]
    SEGMENT_FIELD_REGION: _ClassVar[SegmentField]
    SEGMENT_FIELD_VARIANT: _ClassVar[SegmentField]

class ExportTable(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_TABLE_UNSPECIFIED: _ClassVar[ExportTable]
    EXPORT_TABLE_TIMELINES: _ClassVar[ExportTable]
    EXPORT_TABLE_CURVES: _ClassVar[ExportTable]
    EXPORT_TABLE_SUMMARIES: _ClassVar[ExportTable]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PARQUET: _ClassVar[ExportFormat]
PASS_SELECTION_UNSPECIFIED: PassSelection
PASS_SELECTION_FIRST: PassSelection
PASS_SELECTION_REWATCHES: PassSelection
PASS_SELECTION_ALL: PassSelection
SEGMENT_FIELD_UNSPECIFIED: SegmentField
SEGMENT_FIELD_AGE_BAND: SegmentField
SEGMENT_FIELD_GENDER: SegmentField
SEGMENT_FIELD_REGION: SegmentField
SEGMENT_FIELD_VARIANT: SegmentField
EXPORT_TABLE_UNSPECIFIED: ExportTable
EXPORT_TABLE_TIMELINES: ExportTable
EXPORT_TABLE_CURVES: ExportTable
EXPORT_TABLE_SUMMARIES: ExportTable
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_PARQUET: ExportFormat

class AnalyticsFilter(_message.Message):
    __slots__ = ("variant_ids", "age_bands", "genders", "regions", "emotions", "start_s", "end_s", "sessions_from", "sessions_to", "min_attention_share", "passes")
    VARIANT_IDS_FIELD_NUMBER: _ClassVar[int]
    AGE_BANDS_FIELD_NUMBER: _ClassVar[int]
    GENDERS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    EMOTIONS_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FROM_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_TO_FIELD_NUMBER: _ClassVar[int]
    MIN_ATTENTION_SHARE_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    variant_ids: _containers.RepeatedScalarFieldContainer[str]
    age_bands: _containers.RepeatedScalarFieldContainer[str]
    genders: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedScalarFieldContainer[str]
    emotions: _containers.RepeatedScalarFieldContainer[str]
    start_s: int
    end_s: int
    sessions_from: _timestamp_pb2.Timestamp
    sessions_to: _timestamp_pb2.Timestamp
    min_attention_share: float
    passes: PassSelection
    def __init__(self, variant_ids: _Optional[_Iterable[str]] = ..., age_bands: _Optional[_Iterable[str]] = ..., genders: _Optional[_Iterable[str]] = ..., regions: _Optional[_Iterable[str]] = ..., emotions: _Optional[_Iterable[str]] = ..., start_s: _Optional[int] = ..., end_s: _Optional[int] = ..., sessions_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sessions_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_attention_share: _Optional[float] = ..., passes: _Optional[_Union[PassSelection, str]] = ...) -> None: ...

class SuppressedSpan(_message.Message):
    __slots__ = ("start_s", "end_s", "reason")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    start_s: int
    end_s: int
    reason: str
    def __init__(self, start_s: _Optional[int] = ..., end_s: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class MetricCurve(_message.Message):
    __slots__ = ("metric", "mean", "ci_low", "ci_high", "viewers")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    mean: _containers.RepeatedScalarFieldContainer[float]
    ci_low: _containers.RepeatedScalarFieldContainer[float]
    ci_high: _containers.RepeatedScalarFieldContainer[float]
    viewers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, metric: _Optional[str] = ..., mean: _Optional[_Iterable[float]] = ..., ci_low: _Optional[_Iterable[float]] = ..., ci_high: _Optional[_Iterable[float]] = ..., viewers: _Optional[_Iterable[int]] = ...) -> None: ...

class Curves(_message.Message):
    __slots__ = ("seconds", "viewers", "attention_share", "metrics", "suppressed", "sessions", "min_viewers", "confidence_level")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_SHARE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    seconds: _containers.RepeatedScalarFieldContainer[int]
    viewers: _containers.RepeatedScalarFieldContainer[int]
    attention_share: _containers.RepeatedScalarFieldContainer[float]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricCurve]
    suppressed: _containers.RepeatedCompositeFieldContainer[SuppressedSpan]
    sessions: int
    min_viewers: int
    confidence_level: float
    def __init__(self, seconds: _Optional[_Iterable[int]] = ..., viewers: _Optional[_Iterable[int]] = ..., attention_share: _Optional[_Iterable[float]] = ..., metrics: _Optional[_Iterable[_Union[MetricCurve, _Mapping]]] = ..., suppressed: _Optional[_Iterable[_Union[SuppressedSpan, _Mapping]]] = ..., sessions: _Optional[int] = ..., min_viewers: _Optional[int] = ..., confidence_level: _Optional[float] = ...) -> None: ...

class GetVideoCurvesRequest(_message.Message):
    __slots__ = ("video_id", "filter")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filter: AnalyticsFilter
    def __init__(self, video_id: _Optional[str] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ...) -> None: ...

class GetVideoCurvesResponse(_message.Message):
    __slots__ = ("video_id", "curves")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    curves: Curves
    def __init__(self, video_id: _Optional[str] = ..., curves: _Optional[_Union[Curves, _Mapping]] = ...) -> None: ...

class KeyMoment(_message.Message):
    __slots__ = ("metric", "kind", "start_s", "end_s", "peak_s", "value", "size", "viewers", "min_viewers")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    PEAK_S_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    MIN_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    kind: str
    start_s: int
    end_s: int
    peak_s: int
    value: float
    size: float
    viewers: int
    min_viewers: int
    def __init__(self, metric: _Optional[str] = ..., kind: _Optional[str] = ..., start_s: _Optional[int] = ..., end_s: _Optional[int] = ..., peak_s: _Optional[int] = ..., value: _Optional[float] = ..., size: _Optional[float] = ..., viewers: _Optional[int] = ..., min_viewers: _Optional[int] = ...) -> None: ...

class GetKeyMomentsRequest(_message.Message):
    __slots__ = ("video_id", "filter", "min_prominence", "min_duration_s")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_PROMINENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filter: AnalyticsFilter
    min_prominence: float
    min_duration_s: float
    def __init__(self, video_id: _Optional[str] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ..., min_prominence: _Optional[float] = ..., min_duration_s: _Optional[float] = ...) -> None: ...

class GetKeyMomentsResponse(_message.Message):
    __slots__ = ("video_id", "moments", "suppressed", "sessions")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    MOMENTS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    moments: _containers.RepeatedCompositeFieldContainer[KeyMoment]
    suppressed: _containers.RepeatedCompositeFieldContainer[SuppressedSpan]
    sessions: int
    def __init__(self, video_id: _Optional[str] = ..., moments: _Optional[_Iterable[_Union[KeyMoment, _Mapping]]] = ..., suppressed: _Optional[_Iterable[_Union[SuppressedSpan, _Mapping]]] = ..., sessions: _Optional[int] = ...) -> None: ...

class MetricComparison(_message.Message):
    __slots__ = ("metric", "n_a", "n_b", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "hedges_g", "welch_p", "mannwhitney_p", "holm_p", "holm_mannwhitney_p", "reliable", "n_needed")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    N_A_FIELD_NUMBER: _ClassVar[int]
    N_B_FIELD_NUMBER: _ClassVar[int]
    MEAN_A_FIELD_NUMBER: _ClassVar[int]
    MEAN_B_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    HEDGES_G_FIELD_NUMBER: _ClassVar[int]
    WELCH_P_FIELD_NUMBER: _ClassVar[int]
    MANNWHITNEY_P_FIELD_NUMBER: _ClassVar[int]
    HOLM_P_FIELD_NUMBER: _ClassVar[int]
    HOLM_MANNWHITNEY_P_FIELD_NUMBER: _ClassVar[int]
    RELIABLE_FIELD_NUMBER: _ClassVar[int]
    N_NEEDED_FIELD_NUMBER: _ClassVar[int]
    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    hedges_g: float
    welch_p: float
    mannwhitney_p: float
    holm_p: float
    holm_mannwhitney_p: float
    reliable: bool
    n_needed: int
    def __init__(self, metric: _Optional[str] = ..., n_a: _Optional[int] = ..., n_b: _Optional[int] = ..., mean_a: _Optional[float] = ..., mean_b: _Optional[float] = ..., difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., hedges_g: _Optional[float] = ..., welch_p: _Optional[float] = ..., mannwhitney_p: _Optional[float] = ..., holm_p: _Optional[float] = ..., holm_mannwhitney_p: _Optional[float] = ..., reliable: _Optional[bool] = ..., n_needed: _Optional[int] = ...) -> None: ...

class CurveDifference(_message.Message):
    __slots__ = ("metric", "seconds", "difference", "ci_low", "ci_high", "n_a", "n_b", "suppressed")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    N_A_FIELD_NUMBER: _ClassVar[int]
    N_B_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    metric: str
    seconds: _containers.RepeatedScalarFieldContainer[int]
    difference: _containers.RepeatedScalarFieldContainer[float]
    ci_low: _containers.RepeatedScalarFieldContainer[float]
    ci_high: _containers.RepeatedScalarFieldContainer[float]
    n_a: _containers.RepeatedScalarFieldContainer[int]
    n_b: _containers.RepeatedScalarFieldContainer[int]
    suppressed: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, metric: _Optional[str] = ..., seconds: _Optional[_Iterable[int]] = ..., difference: _Optional[_Iterable[float]] = ..., ci_low: _Optional[_Iterable[float]] = ..., ci_high: _Optional[_Iterable[float]] = ..., n_a: _Optional[_Iterable[int]] = ..., n_b: _Optional[_Iterable[int]] = ..., suppressed: _Optional[_Iterable[bool]] = ...) -> None: ...

class CompareVariantsRequest(_message.Message):
    __slots__ = ("video_id", "variant_a", "variant_b", "filter", "metrics", "curve_metric")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_A_FIELD_NUMBER: _ClassVar[int]
    VARIANT_B_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CURVE_METRIC_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_a: str
    variant_b: str
    filter: AnalyticsFilter
    metrics: _containers.RepeatedScalarFieldContainer[str]
    curve_metric: str
    def __init__(self, video_id: _Optional[str] = ..., variant_a: _Optional[str] = ..., variant_b: _Optional[str] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ..., metrics: _Optional[_Iterable[str]] = ..., curve_metric: _Optional[str] = ...) -> None: ...

class CompareVariantsResponse(_message.Message):
    __slots__ = ("video_id", "variant_a", "variant_b", "metrics", "verdict", "suppressed_reason", "sample_size_warning", "curve_difference")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_A_FIELD_NUMBER: _ClassVar[int]
    VARIANT_B_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_WARNING_FIELD_NUMBER: _ClassVar[int]
    CURVE_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    variant_a: str
    variant_b: str
    metrics: _containers.RepeatedCompositeFieldContainer[MetricComparison]
    verdict: str
    suppressed_reason: str
    sample_size_warning: str
    curve_difference: CurveDifference
    def __init__(self, video_id: _Optional[str] = ..., variant_a: _Optional[str] = ..., variant_b: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[MetricComparison, _Mapping]]] = ..., verdict: _Optional[str] = ..., suppressed_reason: _Optional[str] = ..., sample_size_warning: _Optional[str] = ..., curve_difference: _Optional[_Union[CurveDifference, _Mapping]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("value", "viewers", "suppressed", "reason", "curves")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    value: str
    viewers: int
    suppressed: bool
    reason: str
    curves: Curves
    def __init__(self, value: _Optional[str] = ..., viewers: _Optional[int] = ..., suppressed: _Optional[bool] = ..., reason: _Optional[str] = ..., curves: _Optional[_Union[Curves, _Mapping]] = ...) -> None: ...

class GetSegmentsRequest(_message.Message):
    __slots__ = ("video_id", "filter", "field")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filter: AnalyticsFilter
    field: SegmentField
    def __init__(self, video_id: _Optional[str] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ..., field: _Optional[_Union[SegmentField, str]] = ...) -> None: ...

class GetSegmentsResponse(_message.Message):
    __slots__ = ("video_id", "field", "segments")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    field: SegmentField
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    def __init__(self, video_id: _Optional[str] = ..., field: _Optional[_Union[SegmentField, str]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ...) -> None: ...

class Norm(_message.Message):
    __slots__ = ("metric", "score", "percentile", "norm_size")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    NORM_SIZE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    score: float
    percentile: float
    norm_size: int
    def __init__(self, metric: _Optional[str] = ..., score: _Optional[float] = ..., percentile: _Optional[float] = ..., norm_size: _Optional[int] = ...) -> None: ...

class GetNormsRequest(_message.Message):
    __slots__ = ("video_id", "filter")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filter: AnalyticsFilter
    def __init__(self, video_id: _Optional[str] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ...) -> None: ...

class GetNormsResponse(_message.Message):
    __slots__ = ("video_id", "norms")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    NORMS_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    norms: _containers.RepeatedCompositeFieldContainer[Norm]
    def __init__(self, video_id: _Optional[str] = ..., norms: _Optional[_Iterable[_Union[Norm, _Mapping]]] = ...) -> None: ...

class VariantSummary(_message.Message):
    __slots__ = ("variant_id", "viewers")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    viewers: int
    def __init__(self, variant_id: _Optional[str] = ..., viewers: _Optional[int] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("video_id", "title", "variants", "viewers", "last_session_at", "scores")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    LAST_SESSION_AT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    title: str
    variants: _containers.RepeatedCompositeFieldContainer[VariantSummary]
    viewers: int
    last_session_at: _timestamp_pb2.Timestamp
    scores: _containers.RepeatedCompositeFieldContainer[Norm]
    def __init__(self, video_id: _Optional[str] = ..., title: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[VariantSummary, _Mapping]]] = ..., viewers: _Optional[int] = ..., last_session_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scores: _Optional[_Iterable[_Union[Norm, _Mapping]]] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: AnalyticsFilter
    def __init__(self, filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ...) -> None: ...

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

class ExportRequest(_message.Message):
    __slots__ = ("video_id", "what", "format", "filter")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    what: ExportTable
    format: ExportFormat
    filter: AnalyticsFilter
    def __init__(self, video_id: _Optional[str] = ..., what: _Optional[_Union[ExportTable, str]] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., filter: _Optional[_Union[AnalyticsFilter, _Mapping]] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data", "content_type", "file_name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    file_name: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Emotion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMOTION_UNSPECIFIED: _ClassVar[Emotion]
    EMOTION_ANGRY: _ClassVar[Emotion]
    EMOTION_DISGUST: _ClassVar[Emotion]
    EMOTION_FEAR: _ClassVar[Emotion]
    EMOTION_HAPPY: _ClassVar[Emotion]
    EMOTION_SAD: _ClassVar[Emotion]
    EMOTION_SURPRISE: _ClassVar[Emotion]
    EMOTION_NEUTRAL: _ClassVar[Emotion]
EMOTION_UNSPECIFIED: Emotion
EMOTION_ANGRY: Emotion
EMOTION_DISGUST: Emotion
EMOTION_FEAR: Emotion
EMOTION_HAPPY: Emotion
EMOTION_SAD: Emotion
EMOTION_SURPRISE: Emotion
EMOTION_NEUTRAL: Emotion

class EmotionScores(_message.Message):
    __slots__ = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    ANGRY_FIELD_NUMBER: _ClassVar[int]
    DISGUST_FIELD_NUMBER: _ClassVar[int]
    FEAR_FIELD_NUMBER: _ClassVar[int]
    HAPPY_FIELD_NUMBER: _ClassVar[int]
    SAD_FIELD_NUMBER: _ClassVar[int]
    SURPRISE_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    angry: float
    disgust: float
    fear: float
    happy: float
    sad: float
    surprise: float
    neutral: float
    def __init__(self, angry: _Optional[float] = ..., disgust: _Optional[float] = ..., fear: _Optional[float] = ..., happy: _Optional[float] = ..., sad: _Optional[float] = ..., surprise: _Optional[float] = ..., neutral: _Optional[float] = ...) -> None: ...

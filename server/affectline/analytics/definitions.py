"""Per-frame metrics and their definitions (docs/metrics.md).

Everything here is vectorised over the frames of a session: `FrameArrays` holds one numpy
array per field, `frame_metrics` turns them into `FrameMetrics`. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from affectline.storage.records import EMOTIONS, FrameRecord

N_EMOTIONS = len(EMOTIONS)
NEUTRAL = EMOTIONS.index("neutral")
# Per-frame derived metrics, in the order rollups and curves list them.
DERIVED = ("confidence", "attention", "valence", "expressiveness", "engagement", "sentiment")


@dataclass(frozen=True, slots=True)
class MetricConfig:
    """The knobs behind every metric; the defaults are the documented definitions."""

    # Attention: a face is "roughly frontal" within these bounds (degrees, absolute).
    max_abs_yaw_deg: float = 30.0
    max_abs_pitch_deg: float = 20.0
    # Valence weights in EMOTIONS order: happy +1; angry, disgust, fear, sad -1;
    # surprise and neutral 0 (surprise is as often a scare as a delight).
    valence_weights: tuple[float, ...] = (-1.0, -1.0, -1.0, 1.0, -1.0, 0.0, 0.0)
    # Metrics read the session's smoothed probabilities (raw ones where a frame has none).
    use_smoothed: bool = True
    # A backwards step in video time larger than this starts a new viewing (a seek back).
    seek_tolerance_ms: int = 250
    # Seconds, segments and groups with fewer viewers than this are suppressed.
    min_viewers: int = 5
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        if len(self.valence_weights) != N_EMOTIONS:
            raise ValueError(f"valence_weights needs {N_EMOTIONS} weights, got {len(self.valence_weights)}")
        if any(not -1.0 <= w <= 1.0 for w in self.valence_weights):
            raise ValueError("valence weights must lie in [-1, 1] so valence stays in [-1, 1]")
        if self.min_viewers < 1:
            raise ValueError("min_viewers must be at least 1")
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError("confidence_level must lie in (0, 1)")

    def uses(self, metric: str) -> frozenset[str]:
        """The emotions a derived metric reads: a viewer must allow all of them to get it."""
        if metric == "attention":
            return frozenset()
        if metric == "confidence":
            return frozenset(EMOTIONS)
        if metric in ("expressiveness", "engagement"):
            return frozenset({"neutral"})
        if metric in ("valence", "sentiment"):
            return frozenset(e for e, w in zip(EMOTIONS, self.valence_weights) if w != 0.0)
        raise KeyError(metric)


DEFAULT_CONFIG = MetricConfig()


def allowed_mask(allowed: Iterable[str] | None) -> np.ndarray:
    """A boolean mask over EMOTIONS for a viewer's allowed emotions (None: all)."""
    if allowed is None:
        return np.ones(N_EMOTIONS, dtype=bool)
    names = set(allowed)
    unknown = names - set(EMOTIONS)
    if unknown:
        raise ValueError(f"unknown emotions: {sorted(unknown)}")
    return np.array([e in names for e in EMOTIONS])


@dataclass(frozen=True, slots=True, eq=False)
class FrameArrays:
    """A session's frames as arrays (n frames): NaN where a value is absent."""

    seq: np.ndarray  # int64
    index: np.ndarray  # int64
    video_time_ms: np.ndarray  # int64
    face_present: np.ndarray  # bool
    probs: np.ndarray  # float64 (n, 7), NaN rows for frames without a face
    yaw: np.ndarray = field(default=None)  # type: ignore[assignment]
    pitch: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.video_time_ms)
        set_ = object.__setattr__
        set_(self, "seq", np.asarray(self.seq, dtype=np.int64).reshape(n))
        set_(self, "index", np.asarray(self.index, dtype=np.int64).reshape(n))
        set_(self, "video_time_ms", np.asarray(self.video_time_ms, dtype=np.int64).reshape(n))
        set_(self, "face_present", np.asarray(self.face_present, dtype=bool).reshape(n))
        set_(self, "probs", np.asarray(self.probs, dtype=np.float64).reshape(n, N_EMOTIONS))
        for name in ("yaw", "pitch"):
            value = getattr(self, name)
            arr = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64).reshape(n)
            set_(self, name, arr)

    def __len__(self) -> int:
        return len(self.video_time_ms)

    def take(self, which: np.ndarray) -> FrameArrays:
        return FrameArrays(
            self.seq[which], self.index[which], self.video_time_ms[which], self.face_present[which],
            self.probs[which], self.yaw[which], self.pitch[which],
        )


def frame_arrays(frames: Sequence[FrameRecord], config: MetricConfig = DEFAULT_CONFIG) -> FrameArrays:
    """Stored frame records as arrays (smoothed probabilities where configured and present)."""
    n = len(frames)
    probs = np.full((n, N_EMOTIONS), np.nan)
    for i, f in enumerate(frames):
        p = (f.smoothed or f.probs) if config.use_smoothed else f.probs
        if f.face_present and p is not None:
            probs[i] = p
    nan = float("nan")
    return FrameArrays(
        seq=np.fromiter((f.seq for f in frames), np.int64, n),
        index=np.fromiter((f.index for f in frames), np.int64, n),
        video_time_ms=np.fromiter((f.video_time_ms for f in frames), np.int64, n),
        face_present=np.fromiter((f.face_present for f in frames), bool, n),
        probs=probs,
        yaw=np.fromiter((nan if f.head_yaw_deg is None else f.head_yaw_deg for f in frames), np.float64, n),
        pitch=np.fromiter((nan if f.head_pitch_deg is None else f.head_pitch_deg for f in frames), np.float64, n),
    )


@dataclass(frozen=True, slots=True, eq=False)
class FrameMetrics:
    """Per-frame metrics (arrays of n frames); NaN means not defined for that frame."""

    probs: np.ndarray  # (n, 7); NaN for no face and for emotions the viewer withheld
    confidence: np.ndarray  # top probability
    attention: np.ndarray  # 1 attentive, 0 not, NaN unknown (face present, no pose)
    valence: np.ndarray  # sum of weights x probabilities, in [-1, 1]
    expressiveness: np.ndarray  # 1 - P(neutral)
    engagement: np.ndarray  # attention x expressiveness (0 without a face)
    sentiment: np.ndarray  # valence on face frames not known to be inattentive, else NaN

    def metric(self, name: str) -> np.ndarray:
        if name in EMOTIONS:
            return self.probs[:, EMOTIONS.index(name)]
        return getattr(self, name)


def frame_metrics(
    frames: FrameArrays, config: MetricConfig = DEFAULT_CONFIG, allowed: Iterable[str] | None = None
) -> FrameMetrics:
    """Confidence, attention, valence, expressiveness, engagement and sentiment per frame.

    `allowed` lists the emotions the viewer consented to (None: all): the others are NaN, and
    so is every derived metric that reads one of them (attention reads none).
    """
    mask = allowed_mask(allowed)
    names = {e for e, ok in zip(EMOTIONS, mask) if ok}
    face = frames.face_present
    probs = np.where(face[:, None] & mask[None, :], frames.probs, np.nan)
    raw = np.where(face[:, None], frames.probs, np.nan)
    n = len(frames)
    nan = np.full(n, np.nan)

    yaw_ok = np.abs(frames.yaw) <= config.max_abs_yaw_deg
    pitch_ok = np.isnan(frames.pitch) | (np.abs(frames.pitch) <= config.max_abs_pitch_deg)
    attention = np.where(face, np.where(np.isnan(frames.yaw), np.nan, (yaw_ok & pitch_ok).astype(float)), 0.0)

    def gated(metric: str, values: np.ndarray) -> np.ndarray:
        return values if config.uses(metric) <= names else nan

    weights = np.asarray(config.valence_weights)
    used = weights != 0.0
    confidence = gated("confidence", raw.max(axis=1))
    valence = gated("valence", raw[:, used] @ weights[used])
    expressiveness = gated("expressiveness", 1.0 - raw[:, NEUTRAL])
    engagement = gated("engagement", np.where(attention == 0.0, 0.0, attention * (1.0 - raw[:, NEUTRAL])))
    sentiment = gated("sentiment", np.where(attention == 0.0, np.nan, valence))
    return FrameMetrics(probs, confidence, attention, valence, expressiveness, engagement, sentiment)

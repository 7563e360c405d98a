"""FER2013 (+ FER+ votes) loading and training targets.

The npz layout is described in shared/data/fer2013/README.md. Splits follow the usual protocol:
train on Training, select checkpoints and fit calibration on PublicTest, report on PrivateTest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ../shared beside the repository root (never copied into it); every command takes --data to override.
DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared/data/fer2013/fer2013.npz"
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 label ids
SPLITS = {"train": 0, "public": 1, "private": 2}
# FER+ vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
# Column for each FER2013 class, in CLASS_NAMES order (contempt/unknown/NF have no FER2013 class).
FERPLUS_COLUMNS = (4, 5, 6, 1, 3, 2, 0)
# Same normalisation as the shipped fer-mini-xception manifest: x = (pixel/255 - 0.5) / 0.5
PIXEL_MEAN, PIXEL_STD = 0.5, 0.5


class DataNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Split:
    pixels: np.ndarray  # uint8 [N,48,48]
    labels: np.ndarray  # int64 [N], FER2013 labels
    votes: np.ndarray  # float32 [N,7], FER+ vote distribution over CLASS_NAMES (zeros: no usable votes)

    def __len__(self) -> int:
        return len(self.labels)

    def first(self, n: int) -> Split:
        """The first n images (--train-limit / --eval-limit); all of them when n <= 0."""
        return self if n <= 0 else Split(self.pixels[:n], self.labels[:n], self.votes[:n])


def load_split(path: Path, split: str) -> Split:
    if not Path(path).is_file():
        raise DataNotFoundError(f"FER2013 data not found at {path} (pass --data PATH to fer2013.npz)")
    with np.load(path) as d:
        sel = d["usage"] == SPLITS[split]
        votes = d["ferplus_votes"][sel][:, FERPLUS_COLUMNS].astype(np.float32)
        return Split(pixels=d["pixels"][sel], labels=d["label"][sel].astype(np.int64),
                     votes=votes / np.maximum(votes.sum(1, keepdims=True), 1.0))


def soft_targets(split: Split, ferplus_weight: float, smoothing: float) -> np.ndarray:
    """(1-a) * one-hot(FER2013 label) + a * FER+ distribution, then label smoothing.

    The FER2013 label stays the main signal because that is what we are evaluated on; FER+'s ten
    annotators soften noisy or ambiguous labels. Rows without FER+ votes (mostly non-faces) keep
    the one-hot target.
    """
    k = len(CLASS_NAMES)
    onehot = np.eye(k, dtype=np.float32)[split.labels]
    has_votes = split.votes.sum(1, keepdims=True) > 0
    t = np.where(has_votes, (1 - ferplus_weight) * onehot + ferplus_weight * split.votes, onehot)
    return ((1 - smoothing) * t + smoothing / k).astype(np.float32)


def normalise(pixels_01: "np.ndarray | object") -> object:
    """[0,1] pixels -> network input (works for numpy arrays and torch tensors)."""
    return (pixels_01 - PIXEL_MEAN) / PIXEL_STD  # type: ignore[operator]

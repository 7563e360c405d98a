"""Shared fixtures: database backends, real FER2013 face crops, a running server."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from affectline.face_crop import resize
from db_backends import db_engine, db_url, empty_db_url, pg_admin_url, pg_migrated_url  # noqa: F401

# Servers the tests start skip the two start-up probes (timing the model's variants, fitting the
# run budget): ~4 s of every start on 2 cores, ~40 starts. test_engine_variants.py and
# test_run_budget.py test the probes; test_cli's README test serves with them (DEFAULT_START_ENV).
PROBES_OFF = {"AFFECTLINE_TIME_VARIANTS": "0", "AFFECTLINE_MAX_RUN_MS": "0"}
DEFAULT_START_ENV = {k: v for k, v in os.environ.items() if k not in PROBES_OFF}
for _name, _value in PROBES_OFF.items():
    os.environ.setdefault(_name, _value)

REPO_ROOT = Path(__file__).resolve().parents[1]
FER_NPZ = REPO_ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.npz"
HAPPY, SAD = 3, 4


def served_crop_size() -> int:
    """Side of the crops the default model takes: the size the server's CropSpec asks for."""
    from affectline.config import Settings
    from affectline.models.registry import ModelRegistry

    return ModelRegistry().get(Settings().model).manifest.input.width


@pytest.fixture(scope="session")
def crop_size() -> int:
    return served_crop_size()


def _to_model_size(faces: np.ndarray) -> np.ndarray:
    size = served_crop_size()
    return np.stack([resize(f, (size, size)) for f in faces])


@pytest.fixture(scope="session")
def fer_faces() -> dict[str, np.ndarray]:
    """Clearly happy and clearly sad PrivateTest faces (FER2013 label agrees with >= 8 of 10 FER+ votes),
    resized to the served model's input size. Skips when ../shared/data/fer2013 is absent."""
    if not FER_NPZ.exists():
        pytest.skip(f"FER2013 data not found at {FER_NPZ}")
    data = np.load(FER_NPZ)
    usage, label, votes, exact = data["usage"], data["label"], data["ferplus_votes"], data["pixels_exact"]
    private = (usage == 2) & (exact == 1)
    happy = private & (label == HAPPY) & (votes[:, 1] >= 8)  # FER+ column 1 = happiness
    sad = private & (label == SAD) & (votes[:, 3] >= 8)  # FER+ column 3 = sadness
    pixels = data["pixels"]
    return {"happy": _to_model_size(pixels[happy]), "sad": _to_model_size(pixels[sad])}

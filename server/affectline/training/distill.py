"""Knowledge distillation targets: registered models' probabilities on the training images.

A teacher is one or more models from the model registry (their fp32 ONNX files, run by the
serving engine on CPU). Several teachers are combined by averaging their log-probabilities (a
normalised geometric mean); the student's soft target becomes
(1 - weight) x its label target + weight x the teacher's distribution (`blend_teacher`).
The teachers' outputs are computed once, on the un-augmented training images, before the first
epoch. Teachers are never run on PublicTest or PrivateTest here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from affectline.inference.engine import EmotionModel
from affectline.models.registry import ModelRegistry
from affectline.training.data import CLASS_NAMES

MODELS_ROOT = Path(__file__).resolve().parents[1] / "models"  # the registry teachers are taken from


def parse_teachers(text: str) -> list[str]:
    """'affectline-vgg/3, affectline-vgg/4' -> ['affectline-vgg/3', 'affectline-vgg/4']."""
    return [t.strip() for t in text.split(",") if t.strip()]


def teacher_refs(teachers: str, weight: float) -> list[str]:
    """The teachers a run distils from ([] when it does not); ValueError unless teachers and a
    weight > 0 are given together (or neither, weight 0)."""
    refs = parse_teachers(teachers)
    if not refs and weight == 0:
        return []
    if not refs or weight <= 0:
        raise ValueError("distillation needs both teachers and a teacher weight > 0 "
                         f"(got teachers={teachers!r}, teacher_weight={weight})")
    return refs


def geometric_mean(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised geometric mean of [N,C] probability arrays (the mean of their log-probabilities,
    softmaxed): classes every teacher finds likely stay likely, one teacher's outlier is damped."""
    z = np.mean([np.log(np.clip(p.astype(np.float64), 1e-7, 1.0)) for p in probs], axis=0)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def blend_teacher(targets: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x targets + weight x teacher, row by row (both [N,C] distributions)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"teacher weight must be in [0, 1], not {weight}")
    return ((1.0 - weight) * targets + weight * teacher).astype(np.float32)


def teacher_probs(refs: Sequence[str], pixels: np.ndarray, models_root: Path, threads: int = 2,
                  batch: int = 512) -> tuple[np.ndarray, list[str]]:
    """The teachers' combined distribution on uint8 crops [N,H,W], and one line per teacher
    (name/version and the sha256 of its fp32 file) for the log and the manifest."""
    registry = ModelRegistry(models_root)
    outputs, described = [], []
    for ref in refs:
        registered = registry.get(ref)
        names = tuple(registered.manifest.class_names)
        if names != CLASS_NAMES:
            raise ValueError(f"teacher {ref}: classes {names} are not FER2013's {CLASS_NAMES}")
        model = EmotionModel.load(registered, providers=["CPUExecutionProvider"], intra_op_threads=threads,
                                  variant="fp32")
        outputs.append(model.predict_in_batches(pixels, batch))
        digest = hashlib.sha256(registered.onnx_path.read_bytes()).hexdigest()
        described.append(f"{registered.key} (model.onnx sha256 {digest[:16]})")
    return geometric_mean(outputs), described

"""Knowledge distillation targets: registered models' probabilities on the training images.

A teacher is one or more models from the model registry (their fp32 ONNX files, run by the
serving engine on CPU). Several teachers are combined by averaging their log-probabilities (a
normalised geometric mean); the student's soft target becomes
(1 - weight) x its label target + weight x the teacher's distribution (`blend_teacher`).
The teachers' outputs are computed once, on the un-augmented training images, before the first
epoch. Teachers are never run on PublicTest or PrivateTest here.

A teacher may also come as a file of precomputed probabilities (`save_teacher_file`), e.g. the
out-of-fold outputs of k runs that each held one fold of the training images out
(scripts/build_out_of_fold_teacher.py, training.folds). The file records the sha256 of the
training pixels its rows belong to, so it is never blended into another image set's targets.
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


def teacher_refs(teachers: str, weight: float, teacher_file: str = "") -> list[str]:
    """The registered teachers a run distils from ([] when it does not, or distils from a teacher
    file); ValueError unless a weight > 0 comes with exactly one source (registered teachers or a
    teacher file), or weight 0 with neither."""
    refs = parse_teachers(teachers)
    if refs and teacher_file:
        raise ValueError("distillation takes registered teachers or a teacher file, not both")
    if not refs and not teacher_file and weight == 0:
        return []
    if not (refs or teacher_file) or weight <= 0:
        raise ValueError("distillation needs both teachers (or a teacher file) and a teacher weight > 0 "
                         f"(got teachers={teachers!r}, teacher_file={teacher_file!r}, teacher_weight={weight})")
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


def pixels_sha256(pixels: np.ndarray) -> str:
    """Identity of an image set (its uint8 bytes, in order)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


def save_teacher_file(path: Path, probs: np.ndarray, pixels: np.ndarray, described: Sequence[str]) -> None:
    """Write a teacher's [N,C] distribution on the images `pixels` [N,H,W] (written then renamed)."""
    if len(probs) != len(pixels):
        raise ValueError(f"{len(probs)} teacher rows for {len(pixels)} images")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, probs=probs.astype(np.float32), pixels_sha256=pixels_sha256(pixels),
             described=np.array(list(described)))
    tmp.replace(path)


def load_teacher_file(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A teacher file's distribution for exactly these images, and its description; ValueError
    when the file was made for other images (another data file, --train-limit or fold)."""
    with np.load(path) as d:
        probs, digest, described = d["probs"], str(d["pixels_sha256"]), [str(x) for x in d["described"]]
    if digest != pixels_sha256(pixels) or len(probs) != len(pixels):
        raise ValueError(f"teacher file {path} was made for other training images ({len(probs)} rows, pixels "
                         f"sha256 {digest[:16]}) than these ({len(pixels)}, {pixels_sha256(pixels)[:16]})")
    if probs.ndim != 2 or probs.shape[1] != len(CLASS_NAMES):
        raise ValueError(f"teacher file {path}: probabilities of shape {probs.shape}, not [N,{len(CLASS_NAMES)}]")
    return probs.astype(np.float32), described


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

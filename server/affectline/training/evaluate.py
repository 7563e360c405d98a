"""`affectline evaluate`: a registered model's FER2013 PublicTest/PrivateTest figures, as served.

The crops go through EmotionModel (the engine `serve` and `classify` run, same precision
variant choice, resized to the model's input as the serving path does). Prints accuracy,
macro-F1, per-class recall, happy-vs-sad (also over the faces whose FER+ votes back the
FER2013 label, for context: the labels are noisy), calibration and the confusion matrix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from affectline.inference.engine import EmotionModel
from affectline.models.registry import RegisteredModel
from affectline.training.data import CLASS_NAMES, FERPLUS_COLUMNS, SPLITS, DataNotFoundError
from affectline.training.metrics import (
    HAPPY,
    SAD,
    classification_report,
    happy_vs_sad_where_ferplus_agrees,
    manifest_accuracy,
)
from affectline.training.variants import to_model_size

SPLIT_NAMES = {"public": "PublicTest", "private": "PrivateTest"}


def evaluate_split(model: EmotionModel, pixels: np.ndarray, labels: np.ndarray, votes: np.ndarray,
                   batch_size: int = 64) -> dict[str, Any]:
    """classification_report of the model on 48x48 crops, plus timing and the FER+-backed happy-vs-sad."""
    if tuple(model.class_names) != CLASS_NAMES:
        raise ValueError(f"model classes {model.class_names} are not the FER2013 label order {CLASS_NAMES}")
    t0 = time.perf_counter()
    probs = model.predict_in_batches(to_model_size(pixels, model.registered.manifest), batch_size)
    seconds = time.perf_counter() - t0
    backed, backed_n = happy_vs_sad_where_ferplus_agrees(probs, labels, votes)
    return {**classification_report(probs, labels), "seconds": seconds,
            "happy_vs_sad_n": int(np.isin(labels, (HAPPY, SAD)).sum()),
            "happy_vs_sad_ferplus_backed": backed, "happy_vs_sad_ferplus_backed_n": backed_n}


def format_report(name: str, r: dict[str, Any]) -> str:
    lines = [
        f"=== FER2013 {name}: {r['n']} images, {r['n'] / r['seconds']:.0f} crops/s ===",
        f"accuracy      {r['accuracy'] * 100:.2f} %",
        f"macro-F1      {r['macro_f1'] * 100:.2f} %",
        f"happy-vs-sad  {r['happy_vs_sad'] * 100:.2f} % (n={r['happy_vs_sad_n']}, argmax of p(happy) vs p(sad))",
        (f"              {r['happy_vs_sad_ferplus_backed'] * 100:.2f} % on the {r['happy_vs_sad_ferplus_backed_n']} "
         "of them whose FER+ votes favour the FER2013 label over the other class"),
        f"calibration   ECE {r['ece']:.4f}, NLL {r['nll']:.4f}",
        "per-class recall: " + "  ".join(f"{c} {v:.3f}" for c, v in r["recall"].items()),
        "confusion matrix (rows = true, cols = predicted):",
        " " * 10 + "".join(f"{c[:8]:>9}" for c in CLASS_NAMES),
    ]
    lines += [f"{c:>10}" + "".join(f"{v:>9d}" for v in row) for c, row in zip(CLASS_NAMES, r["confusion"])]
    return "\n".join(lines)


def evaluate(registered: RegisteredModel, data: Path, splits: list[str], variant: str = "auto",
             batch_size: int = 64) -> tuple[EmotionModel, dict[str, dict[str, Any]]]:
    """Reports per split ("public", "private") of the registered model run as `serve` runs it."""
    if not data.is_file():
        raise DataNotFoundError(f"FER2013 data not found at {data} (pass --data PATH to fer2013.npz)")
    model = EmotionModel.load(registered, variant=variant)
    with np.load(data) as d:
        usage, pixels, labels = d["usage"], d["pixels"], d["label"].astype(np.int64)
        votes = d["ferplus_votes"][:, FERPLUS_COLUMNS].astype(np.float32)
    results = {}
    for split in splits:
        sel = usage == SPLITS[split]
        results[split] = evaluate_split(model, pixels[sel], labels[sel], votes[sel], batch_size)
    return model, results


def update_manifest(registered: RegisteredModel, results: dict[str, dict[str, Any]], measured_with: str) -> Path:
    """Writes the measured figures into the model's manifest.json `accuracy` (a converted model
    such as fer-mini-xception has none until it is evaluated)."""
    path = registered.onnx_path.parent / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["accuracy"] = manifest_accuracy(results["public"], results["private"], measured_with,
                                             manifest.get("provenance", {}).get("onnx_sha256", ""))
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path

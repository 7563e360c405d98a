"""Register the flip-averaged version of an exported model (`affectline train --flip-average`).

Takes a model directory's fp32 model.onnx (softmax(logits / T), as training.export writes it),
folds test-time flip averaging into the graph (training.flip_average), re-fits the temperature on
PublicTest (the mean of two logit vectors is less spread out than either) and writes
OUT_DIR/{model.onnx, manifest.json} with the PublicTest and PrivateTest metrics measured on the
new file through the serving engine. The weights are the source's, byte for byte. Needs no torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from affectline.inference.engine import EmotionModel
from affectline.models.registry import ModelManifest, RegisteredModel
from affectline.training.calibrate import fit_temperature, softmax
from affectline.training.data import Split
from affectline.training.flip_average import flip_averaged_graph
from affectline.training.metrics import classification_report, manifest_accuracy, rounded_report
from affectline.training.variants import to_model_size

log = logging.getLogger("affectline.training")
SPLIT_KEYS = {"public": "fer2013_public_test", "private": "fer2013_private_test"}


def served_probs(manifest: dict[str, Any], onnx_path: Path, splits: dict[str, Split]) -> dict[str, np.ndarray]:
    """Each split's probabilities from the fp32 file through EmotionModel, i.e. exactly as the server runs it."""
    parsed = ModelManifest.from_dict(manifest)
    model = EmotionModel.load(RegisteredModel(parsed, onnx_path), providers=["CPUExecutionProvider"], variant="fp32")
    return {s: model.predict_in_batches(to_model_size(sp.pixels, parsed)) for s, sp in splits.items()}


def build_manifest(source: dict[str, Any], onnx_sha: str, logit_scale: float,
                   reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    m = copy.deepcopy(source)
    m.pop("variants", None)  # rebuilt from this file by training.variants
    m["provenance"] = {
        **source["provenance"],
        "onnx_sha256": onnx_sha,
        "flip_averaged_from": {"model": "the plain export of the same checkpoint (not kept)",
                               "onnx_sha256": source["provenance"].get("onnx_sha256", "")},
        "converter": source["provenance"].get("converter", "") + "; flip averaging: Slice + Concat on the batch axis, "
                     "mean of the Softmax inputs, scaled by a re-fitted temperature",
    }
    m["accuracy"] = manifest_accuracy(reports["public"], reports["private"], "affectline.training.flip_export "
                                      "(EmotionModel.predict on the npz arrays, onnxruntime CPU fp32)", onnx_sha)
    m["calibration"] = {
        "method": "temperature scaling fitted on PublicTest (NLL), on top of the source's temperature",
        "source_temperature": source.get("calibration", {}).get("temperature"),
        "flip_logit_scale": logit_scale,
        "ece_15_bins": {SPLIT_KEYS[s]: {"before": round(r["ece_uncalibrated"], 4), "after": round(r["ece"], 4)}
                        for s, r in reports.items()},
        "nll": {SPLIT_KEYS[s]: {"before": round(r["nll_uncalibrated"], 4), "after": round(r["nll"], 4)}
                for s, r in reports.items()},
        "before_means": "flip-averaged with the source's temperature (logit scale 1)",
    }
    m["metrics"] = {SPLIT_KEYS[s]: rounded_report(reports[s]) for s in ("private", "public")}
    m["training"] = {**source.get("training", {}), "test_time_flip_averaging": True}
    return m


def flip_average_model(src_dir: Path, out_dir: Path, splits: dict[str, Split]) -> dict[str, Any]:
    """Writes the flip-averaged model of src_dir (same name and version) to out_dir and returns
    its manifest. `splits` holds "public" (temperature) and "private" (report only)."""
    source = json.loads((src_dir / "manifest.json").read_text())
    src_bytes = (src_dir / "model.onnx").read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    onnx_path.write_bytes(flip_averaged_graph(src_bytes, logit_scale=1.0))
    # log-probabilities are the Softmax input up to a per-row constant, so they stand in for logits
    log_p = {s: np.log(np.clip(p.astype(np.float64), 1e-30, None))
             for s, p in served_probs(source, onnx_path, splits).items()}
    t = fit_temperature(log_p["public"], splits["public"].labels)
    onnx_path.write_bytes(flip_averaged_graph(src_bytes, logit_scale=1.0 / t))

    reports: dict[str, dict[str, Any]] = {}
    for s, probs in served_probs(source, onnx_path, splits).items():
        diff = float(np.abs(probs - softmax(log_p[s], t)).max())
        if diff > 1e-4:
            raise RuntimeError(f"{s}: the scaled graph disagrees with the fitted temperature (max abs diff {diff:.2e})")
        r = classification_report(probs, splits[s].labels)
        before = classification_report(softmax(log_p[s]), splits[s].labels)
        r.update(ece_uncalibrated=before["ece"], nll_uncalibrated=before["nll"])
        reports[s] = r
        log.info("flip-averaged %s: accuracy %.2f %%, happy-vs-sad %.2f %%, macro-F1 %.2f %%, ECE %.4f -> %.4f",
                 s, r["accuracy"] * 100, r["happy_vs_sad"] * 100, r["macro_f1"] * 100, before["ece"], r["ece"])
    manifest = build_manifest(source, hashlib.sha256(onnx_path.read_bytes()).hexdigest(), 1.0 / t, reports)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("built the flip-averaged %s/%s in %s (logit scale %.4f)", manifest["name"], manifest["version"],
             out_dir, 1.0 / t)
    return manifest

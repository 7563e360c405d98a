#!/usr/bin/env python3
"""Register a flip-averaged version of a registered expression model.

    .venv/bin/python scripts/build_flip_averaged_model.py affectline-vgg/4 --version 5

Takes the source's fp32 model.onnx, folds test-time flip averaging into the graph
(affectline.models.flip_average: the logits of each crop and of its mirror image are averaged),
re-fits the temperature on PublicTest (the mean of two logit vectors is less spread out than
either), and writes MODELS_ROOT/NAME/VERSION/{model.onnx, manifest.json} with the PublicTest and
PrivateTest metrics measured on the new file through the serving engine. The weights are the
source's, byte for byte; only the graph around them changes. Afterwards build the precision
variants as for any model:

    .venv/bin/python scripts/build_model_variants.py server/affectline/models/NAME/VERSION

Select on PublicTest only; PrivateTest is reported, never used to decide.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from affectline.inference.engine import EmotionModel
from affectline.models.flip_average import flip_averaged_graph
from affectline.models.registry import DEFAULT_ROOT, ModelManifest, ModelNotFoundError, ModelRegistry, RegisteredModel
from affectline.training.calibrate import fit_temperature, softmax
from affectline.training.data import CLASS_NAMES, DEFAULT_DATA, DataNotFoundError, Split, load_split
from affectline.training.evaluate import classification_report, manifest_accuracy, rounded_report

SPLIT_KEYS = {"public": "fer2013_public_test", "private": "fer2013_private_test"}


def served_probs(manifest: dict[str, Any], onnx_path: Path, splits: dict[str, Split]) -> dict[str, np.ndarray]:
    """Each split's probabilities from the fp32 file through EmotionModel, i.e. exactly as the server runs it."""
    model = EmotionModel.load(RegisteredModel(ModelManifest.from_dict(manifest), onnx_path),
                              providers=["CPUExecutionProvider"], variant="fp32")
    return {s: model.predict_in_batches(sp.pixels) for s, sp in splits.items()}


def build_manifest(source: dict[str, Any], version: str, onnx_sha: str, logit_scale: float,
                   reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    m = copy.deepcopy(source)
    src_key = f"{source['name']}/{source['version']}"
    m["version"] = version
    m.pop("variants", None)  # rebuilt from this file by scripts/build_model_variants.py
    m["provenance"] = {
        **source["provenance"],
        "source": f"{src_key}'s weights (unchanged) with test-time flip averaging folded into the graph by "
                  "scripts/build_flip_averaged_model.py (affectline.models.flip_average); see docs/training.md",
        "onnx_sha256": onnx_sha,
        "flip_averaged_from": {"model": src_key, "onnx_sha256": source["provenance"].get("onnx_sha256", "")},
        "converter": source["provenance"].get("converter", "") + "; flip averaging: Slice + Concat on the batch axis, "
                     "mean of the Softmax inputs, scaled by a re-fitted temperature",
    }
    m["accuracy"] = manifest_accuracy(reports["public"], reports["private"], "scripts/build_flip_averaged_model.py "
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="registered model NAME/VERSION whose weights are used")
    ap.add_argument("--version", required=True, help="version to register the flip-averaged model as")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"fer2013.npz (default {DEFAULT_DATA})")
    ap.add_argument("--models-root", type=Path, default=DEFAULT_ROOT, help=f"model registry (default {DEFAULT_ROOT})")
    ap.add_argument("--force", action="store_true", help="overwrite an existing NAME/VERSION")
    args = ap.parse_args(argv)

    try:
        src = ModelRegistry(args.models_root).get(args.source)
        splits = {s: load_split(args.data, s) for s in ("public", "private")}
    except (ModelNotFoundError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if tuple(src.manifest.class_names) != CLASS_NAMES:
        print(f"error: {src.key} classes {src.manifest.class_names} are not the FER2013 order {CLASS_NAMES}",
              file=sys.stderr)
        return 2
    out_dir = args.models_root / src.manifest.name / args.version
    if out_dir.exists() and not args.force:
        print(f"error: {out_dir} exists (pass --force to overwrite)", file=sys.stderr)
        return 2
    source_manifest = json.loads((src.onnx_path.parent / "manifest.json").read_text())
    try:
        unscaled = flip_averaged_graph(src.onnx_path.read_bytes(), logit_scale=1.0)
    except ValueError as e:
        print(f"error: {src.key}: {e}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="flip-averaged-") as tmp:  # nothing lands in the registry half-built
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(unscaled)
        print(f"{src.key}: flip-averaged graph built; fitting the temperature on PublicTest", flush=True)
        # log-probabilities are the Softmax input up to a per-row constant, so they stand in for logits
        log_p = {s: np.log(np.clip(p.astype(np.float64), 1e-30, None))
                 for s, p in served_probs(source_manifest, onnx_path, splits).items()}
        t = fit_temperature(log_p["public"], splits["public"].labels)
        logit_scale = 1.0 / t
        onnx_path.write_bytes(flip_averaged_graph(src.onnx_path.read_bytes(), logit_scale=logit_scale))

        reports: dict[str, dict[str, Any]] = {}
        for s, probs in served_probs(source_manifest, onnx_path, splits).items():
            diff = float(np.abs(probs - softmax(log_p[s], t)).max())
            if diff > 1e-4:
                print(f"error: {s}: the scaled graph disagrees with the fitted temperature (max abs diff {diff:.2e})",
                      file=sys.stderr)
                return 1
            r = classification_report(probs, splits[s].labels)
            before = classification_report(softmax(log_p[s]), splits[s].labels)
            r.update(ece_uncalibrated=before["ece"], nll_uncalibrated=before["nll"])
            reports[s] = r
            print(f"{s:>7}: accuracy {r['accuracy'] * 100:.2f} %, happy-vs-sad {r['happy_vs_sad'] * 100:.2f} %, "
                  f"macro-F1 {r['macro_f1'] * 100:.2f} %, ECE {before['ece']:.4f} -> {r['ece']:.4f}", flush=True)
        manifest = build_manifest(source_manifest, args.version, hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
                                  logit_scale, reports)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, out_dir / "model.onnx")
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"registered {src.manifest.name}/{args.version} in {out_dir} (logit scale {logit_scale:.4f}); next:\n"
          f"  .venv/bin/python scripts/build_model_variants.py {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

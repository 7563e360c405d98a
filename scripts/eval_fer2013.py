#!/usr/bin/env python3
"""Evaluate a registered expression model on FER2013 PublicTest / PrivateTest.

Goes through the same path as `affectline classify`: each split's 48x48 images are written as
PNG files into a temporary directory and classified with `affectline.classify.classify_files`.
Prints accuracy, macro-F1, per-class recall, the confusion matrix and happy-vs-sad accuracy
(also over the happy/sad faces whose FER+ votes back the FER2013 label, for context).
`--update-manifest` writes the measured numbers into the model's manifest.json.

    .venv/bin/python scripts/eval_fer2013.py --split both
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectline.classify import classify_files
from affectline.inference.engine import EmotionModel
from affectline.models.registry import DEFAULT_MODEL, ModelNotFoundError, ModelRegistry
from affectline.training.data import CLASS_NAMES, DEFAULT_DATA, FERPLUS_COLUMNS
from affectline.training.evaluate import (HAPPY, SAD, classification_report, happy_vs_sad_where_ferplus_agrees,
                                          manifest_accuracy)

SPLITS = {"public": (1, "PublicTest"), "private": (2, "PrivateTest")}


def evaluate_split(model: EmotionModel, pixels: np.ndarray, labels: np.ndarray, votes: np.ndarray, name: str,
                   batch_size: int) -> dict[str, Any]:
    classes = model.class_names
    if tuple(classes) != CLASS_NAMES:
        raise SystemExit(f"model classes {classes} are not the FER2013 label order {CLASS_NAMES}")
    n = len(labels)
    with tempfile.TemporaryDirectory(prefix=f"fer2013-{name}-") as tmp:
        t0 = time.perf_counter()
        for i, img in enumerate(pixels):
            Image.fromarray(img).save(Path(tmp) / f"{i:05d}.png")
        print(f"[{name}] wrote {n} PNGs in {time.perf_counter() - t0:.1f}s; classifying", flush=True)
        t0 = time.perf_counter()
        probs = np.full((n, len(classes)), np.nan, np.float32)
        for k, r in enumerate(classify_files([Path(tmp)], model, batch_size=batch_size), 1):
            if r.error or r.probs is None:
                raise SystemExit(f"[{name}] {r.path.name}: no prediction (face_found={r.face_found}, error={r.error})")
            probs[int(r.path.stem)] = [r.probs[c] for c in classes]
            if k % 1000 == 0:
                print(f"[{name}] {k}/{n}", flush=True)
        dt = time.perf_counter() - t0
    if np.isnan(probs).any():
        raise SystemExit(f"[{name}] some images got no result")
    hs = np.isin(labels, (HAPPY, SAD))
    backed, backed_n = happy_vs_sad_where_ferplus_agrees(probs, labels, votes)
    return {**classification_report(probs, labels), "n": n, "seconds": dt, "happy_vs_sad_n": int(hs.sum()),
            "happy_vs_sad_ferplus_backed": backed, "happy_vs_sad_ferplus_backed_n": backed_n}


def report(name: str, r: dict[str, Any], classes: tuple[str, ...]) -> None:
    print(f"\n=== FER2013 {name}: {r['n']} images, {r['n'] / r['seconds']:.0f} img/s through classify_files ===")
    print(f"accuracy      {r['accuracy'] * 100:.2f} %")
    print(f"macro-F1      {r['macro_f1'] * 100:.2f} %")
    print(f"happy-vs-sad  {r['happy_vs_sad'] * 100:.2f} % (n={r['happy_vs_sad_n']}, argmax of p(happy) vs p(sad))")
    print(f"              {r['happy_vs_sad_ferplus_backed'] * 100:.2f} % on the {r['happy_vs_sad_ferplus_backed_n']} of them "
          "whose FER+ votes favour the FER2013 label over the other class")
    print(f"calibration   ECE {r['ece']:.4f}, NLL {r['nll']:.4f}")
    print("per-class recall: " + "  ".join(f"{c} {v:.3f}" for c, v in r["recall"].items()))
    print("confusion matrix (rows = true, cols = predicted):")
    print(" " * 10 + "".join(f"{c[:8]:>9}" for c in classes))
    for c, row in zip(classes, r["confusion"]):
        print(f"{c:>10}" + "".join(f"{v:>9d}" for v in row))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"fer2013.npz (default {DEFAULT_DATA})")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="NAME or NAME/VERSION from the model registry")
    ap.add_argument("--split", choices=["public", "private", "both"], default="both")
    ap.add_argument("--variant", default="auto", choices=["auto", "fp32", "fp16", "int8"],
                    help="precision variant (default: auto, what `affectline classify` and `serve` run here)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--update-manifest", action="store_true",
                    help="write the measured accuracy into the model's manifest.json (needs --split both)")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"error: FER2013 data not found at {args.data} (pass --data PATH to fer2013.npz)", file=sys.stderr)
        return 2
    if args.update_manifest and args.split != "both":
        print("error: --update-manifest needs --split both", file=sys.stderr)
        return 2
    if args.update_manifest and args.variant != "fp32":
        print("error: --update-manifest records the fp32 model's accuracy: add --variant fp32", file=sys.stderr)
        return 2

    try:
        registered = ModelRegistry().get(args.model)
    except ModelNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = EmotionModel.load(registered, variant=args.variant)
    print(f"model {model.key} variant {model.variant} ({model.onnx_path}), providers {model.providers}", flush=True)
    print(f"loading {args.data}", flush=True)
    d = np.load(args.data)
    pixels, labels, usage = d["pixels"], d["label"].astype(np.int64), d["usage"]
    votes = d["ferplus_votes"][:, FERPLUS_COLUMNS].astype(np.float32)
    results: dict[str, dict[str, Any]] = {}
    for split in (["public", "private"] if args.split == "both" else [args.split]):
        code, name = SPLITS[split]
        sel = usage == code
        results[split] = evaluate_split(model, pixels[sel], labels[sel], votes[sel], name, args.batch_size)
        report(name, results[split], model.class_names)

    if args.update_manifest:
        man_path = registered.onnx_path.parent / "manifest.json"
        manifest = json.loads(man_path.read_text())
        manifest["accuracy"] = manifest_accuracy(
            results["public"], results["private"],
            "scripts/eval_fer2013.py (48x48 PNGs through affectline.classify.classify_files, onnxruntime CPU fp32)",
            manifest.get("provenance", {}).get("onnx_sha256", ""))
        man_path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"\nupdated {man_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

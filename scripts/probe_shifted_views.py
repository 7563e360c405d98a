#!/usr/bin/env python3
"""Probe test-time shift averaging on a registered model (PublicTest unless asked otherwise).

    .venv/bin/python scripts/probe_shifted_views.py affectline-vgg/6

Runs the model's fp32 file through the serving engine on each crop shifted by whole pixels
(edge replication, as the training augmentation pads with the border), averages the views'
log-probabilities per view set, re-fits the temperature on PublicTest and prints accuracy and
happy-vs-sad per set. It registers nothing: a set that is adopted still has to be folded into
the graph so that serving runs it too. PrivateTest is only computed with `--split both`, which
docs/training.md's rules allow only after a decision made on PublicTest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from affectline.inference.engine import EmotionModel
from affectline.models.registry import DEFAULT_ROOT, ModelNotFoundError, ModelRegistry
from affectline.training.calibrate import fit_temperature, softmax
from affectline.training.data import DEFAULT_DATA, DataNotFoundError, load_split
from affectline.training.evaluate import classification_report

# session 20's pre-registered view sets (docs/training.md)
VIEW_SETS: dict[str, tuple[tuple[int, int], ...]] = {
    "H": ((0, 0), (-2, 0), (2, 0)),
    "V": ((0, 0), (0, -2), (0, 2)),
}


def shifted(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """[N, H, W] images moved dx pixels right and dy down; the uncovered edge repeats the border."""
    n, h, w = pixels.shape
    padded = np.pad(pixels, ((0, 0), (abs(dy),) * 2, (abs(dx),) * 2), mode="edge")
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[:, top:top + h, left:left + w]


def log_probs(model: EmotionModel, pixels: np.ndarray) -> np.ndarray:
    p = model.predict_in_batches(pixels)
    return np.log(np.clip(p.astype(np.float64), 1e-30, None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="registered model NAME/VERSION (its fp32 file is used)")
    ap.add_argument("--split", choices=("public", "both"), default="public",
                    help="public (default) or both (PrivateTest too; only after a decision on PublicTest)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"fer2013.npz (default {DEFAULT_DATA})")
    ap.add_argument("--models-root", type=Path, default=DEFAULT_ROOT, help=f"model registry (default {DEFAULT_ROOT})")
    args = ap.parse_args(argv)
    try:
        registered = ModelRegistry(args.models_root).get(args.model)
        names = ("public", "private") if args.split == "both" else ("public",)
        splits = {s: load_split(args.data, s) for s in names}
    except (ModelNotFoundError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = EmotionModel.load(registered, providers=["CPUExecutionProvider"], variant="fp32")
    views = sorted({v for vs in VIEW_SETS.values() for v in vs})
    lp = {s: {v: log_probs(model, shifted(sp.pixels, *v)) for v in views} for s, sp in splits.items()}
    print(f"{registered.key} fp32, views {views}", flush=True)
    for set_name, view_set in {"single": ((0, 0),), **VIEW_SETS}.items():
        mean = {s: np.mean([lp[s][v] for v in view_set], axis=0) for s in splits}
        t = fit_temperature(mean["public"], splits["public"].labels)
        for s in splits:
            r = classification_report(softmax(mean[s], t), splits[s].labels)
            print(f"{set_name:>6} {s:>7}: accuracy {r['accuracy'] * 100:.2f} %, happy-vs-sad "
                  f"{r['happy_vs_sad'] * 100:.2f} %, macro-F1 {r['macro_f1'] * 100:.2f} %, T {t:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

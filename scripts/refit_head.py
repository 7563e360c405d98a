#!/usr/bin/env python3
"""Refit a registered model's classifier on its frozen features (PublicTest selection only).

    .venv/bin/python scripts/refit_head.py --init-from affectline-vgg/6 --width 48 \
        --out artifacts/training/v6-head-refit

Loads the registered fp32 file into the training network (the warm start of `affectline train
--init-from`), computes the pooled features of the Training and PublicTest crops and their mirror
images, and fits the last layer again (affectline.training.head_refit) in three ways:

  h1  FER2013 labels with label smoothing (the training pipeline's targets, no mixup)
  h2  the same, only on the Training faces whose FER+ votes back the FER2013 label
  h3  0.5 x FER2013 one-hot + 0.5 x FER+ vote distribution, then smoothing

For each, the L2 weight comes from --l2 by the lowest flip-averaged PublicTest NLL; of those, the
head with the highest flip-averaged PublicTest accuracy is written into the network as OUT/best.pt
(the head of the file itself is printed first, for comparison). Export it like any run:

    .venv/bin/affectline train --run-dir OUT --export-only --models-root /tmp/cand --model-version N

PrivateTest is not touched here.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from affectline.training.data import DEFAULT_DATA

VARIANTS = {  # name -> (FER+ weight in the targets, fit only where FER+ backs the label)
    "h1": (0.0, False),
    "h2": (0.0, True),
    "h3": (0.5, False),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--init-from", required=True, help="registered model NAME/VERSION whose features are kept")
    ap.add_argument("--width", type=int, required=True, help="that model's network width (e.g. 48 for affectline-vgg/6)")
    ap.add_argument("--out", type=Path, required=True, help="run directory the refitted network is written to (OUT/best.pt)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"fer2013.npz (default {DEFAULT_DATA})")
    ap.add_argument("--variants", default="h1,h2,h3", help="heads to fit, of h1,h2,h3 (default all)")
    ap.add_argument("--l2", default="1e-5,1e-4,1e-3,1e-2", help="L2 weights to try per head (default 1e-5,1e-4,1e-3,1e-2)")
    ap.add_argument("--smoothing", type=float, default=0.1, help="label smoothing of the targets (default 0.1)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        ap.error(f"--variants: unknown {unknown or 'none given'}; choose from {', '.join(VARIANTS)}")
    try:
        l2s = [float(v) for v in args.l2.split(",")]
    except ValueError:
        ap.error(f"--l2: not a comma-separated list of numbers: {args.l2}")
    if not l2s or min(l2s) < 0:
        ap.error("--l2: give non-negative weights")
    try:
        import torch
    except ImportError:
        print("error: torch is not installed (pip install 'affectline[train]')", file=sys.stderr)
        return 2
    from affectline.models.registry import ModelNotFoundError, ModelRegistry
    from affectline.training.config import TrainConfig
    from affectline.training.data import DataNotFoundError, load_split, soft_targets
    from affectline.training.head_refit import (LinearHead, current_head, ferplus_backs_label, fit_linear_head, flip_mean,
                                                install_head, pooled_features)
    from affectline.training.distill import MODELS_ROOT
    from affectline.training.train import BEST, build_model, mirrored, public_metrics, warm_start_registered

    torch.set_num_threads(args.threads)
    try:
        tr, pub = load_split(args.data, "train"), load_split(args.data, "public")
        registered = ModelRegistry(MODELS_ROOT).get(args.init_from)
        cfg = TrainConfig(data=str(args.data), out_dir=str(args.out), width=args.width, init_from=registered.key,
                          ferplus_weight=0.0, label_smoothing=args.smoothing, select_flip=True, epochs=1)
        net = build_model(cfg)
        diff = warm_start_registered(cfg, net, tr)  # refuses a network that differs from the file
    except (DataNotFoundError, ModelNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{registered.key} loaded into width {args.width} (eval logits within {diff:.1e} of the file's)")

    t0 = time.perf_counter()
    f_tr, f_tr_m = pooled_features(net, tr.pixels), pooled_features(net, mirrored(tr.pixels))
    f_pub = flip_mean(pooled_features(net, pub.pixels), pooled_features(net, mirrored(pub.pixels)))
    print(f"features: {f_tr.shape[1]} per crop, {2 * (len(tr) + len(pub))} crops in {time.perf_counter() - t0:.0f} s")

    @dataclass(frozen=True)
    class Fit:
        name: str
        l2: float
        faces: int
        head: LinearHead
        acc: float
        hvs: float
        nll: float

        def describe(self) -> str:
            return (f"flip-averaged PublicTest accuracy {self.acc * 100:.2f} %, "
                    f"happy-vs-sad {self.hvs * 100:.2f} %, NLL {self.nll:.4f}")

    def fit(name: str, l2: float, faces: int, head: LinearHead) -> Fit:
        m = public_metrics(head.logits(f_pub), pub, "")
        return Fit(name, l2, faces, head, m["acc"], m["happy_vs_sad"], m["nll"])

    own = current_head(net)
    print(f"{registered.key}'s own head: {fit('own', 0.0, len(tr), own).describe()}")
    chosen = []
    for name in variants:
        ferplus_weight, backed_only = VARIANTS[name]
        rows = np.flatnonzero(ferplus_backs_label(tr)) if backed_only else np.arange(len(tr))
        t = soft_targets(tr, ferplus_weight, args.smoothing)[rows]  # the training targets, without mixup
        x, y = np.concatenate([f_tr[rows], f_tr_m[rows]]), np.concatenate([t, t])
        fits = []
        for l2 in l2s:
            t1 = time.perf_counter()
            fits.append(fit(name, l2, len(rows), fit_linear_head(x, y, l2, init=own)))
            print(f"{name} ({len(rows)} faces x 2) l2 {l2:g}: {fits[-1].describe()} "
                  f"({time.perf_counter() - t1:.0f} s)", flush=True)
        best = min(fits, key=lambda f: f.nll)
        print(f"{name}: lowest NLL at l2 {best.l2:g}")
        chosen.append(best)
    sel = max(chosen, key=lambda f: f.acc)
    print(f"selected: {sel.name}, l2 {sel.l2:g}: {sel.describe()}")

    install_head(net, sel.head)
    refit = {"from": registered.key, "head": sel.name, "l2": sel.l2, "faces": sel.faces,
             "ferplus_weight": VARIANTS[sel.name][0], "ferplus_backed_only": VARIANTS[sel.name][1],
             "label_smoothing": args.smoothing,
             "method": "multinomial logistic regression on frozen pooled features of Training crops and mirrors, "
                       "L2 weight by flip-averaged PublicTest NLL",
             "convolutions": f"those of {registered.key}, whose manifest records how they were trained"}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(cfg), "epoch": 0, "model": net.state_dict(), "head_refit": refit}, args.out / BEST)
    print(f"written: {args.out / BEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Average finished training runs' final weights into one network (a weight soup).

    .venv/bin/python scripts/build_weight_soup.py artifacts/training/soup-v6-ft8-s1{1,2,3} \
        --out artifacts/training/soup-v6-ft8

The runs must share a start (`--init-from`) and a width (affectline.training.soup says why). The
soup's BatchNorm statistics are recomputed over the Training split (or, with --average-batchnorm,
averaged like the weights), and it is written as OUT/best.pt; export it like any run:

    .venv/bin/affectline train --run-dir OUT --export-only --models-root /tmp/cand --model-version N

Prints the soup's PublicTest accuracy and happy-vs-sad (plain and flip-averaged); PrivateTest is
not touched here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from affectline.training.data import DEFAULT_DATA


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories (each with last.pt)")
    ap.add_argument("--out", type=Path, required=True, help="run directory the soup is written to (OUT/best.pt)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"fer2013.npz (default {DEFAULT_DATA})")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--average-batchnorm", action="store_true",
                    help="average the BatchNorm running statistics with the weights instead of recomputing "
                         "them over the Training split (default: recompute)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: torch is not installed (pip install 'affectline[train]')", file=sys.stderr)
        return 2
    from affectline.training.data import DataNotFoundError, load_split
    from affectline.training.evaluate import happy_vs_sad
    from affectline.training.soup import SoupError, build_soup
    from affectline.training.train import build_model, flip_averaged_logits, predict_logits
    from affectline.training.config import TrainConfig

    torch.set_num_threads(args.threads)
    try:
        train_split, pub = load_split(args.data, "train"), load_split(args.data, "public")
        t0 = time.perf_counter()
        ckpt = build_soup(args.runs, args.out, train_split.pixels, recompute_bn=not args.average_batchnorm)
    except (DataNotFoundError, SoupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for a in ckpt["soup"]["ingredients"]:
        print(f"ingredient {a['run_dir']}: seed {a['seed']}, {a['epochs']} epochs, {a['weights']} weights, "
              f"last.pt sha256 {a['last_pt_sha256'][:16]}")
    print(f"soup of {len(args.runs)} -> {args.out / 'best.pt'} ({ckpt['soup']['batchnorm']}; "
          f"{time.perf_counter() - t0:.0f} s)")
    net = build_model(TrainConfig.from_dict(ckpt["config"]))
    net.load_state_dict(ckpt["model"])
    plain = predict_logits(net, pub.pixels)
    flip = flip_averaged_logits(net, pub.pixels, plain)
    for name, logits in (("plain", plain), ("flip-averaged", flip)):
        print(f"PublicTest {name}: accuracy {(logits.argmax(1) == pub.labels).mean() * 100:.2f} %, "
              f"happy-vs-sad {happy_vs_sad(logits, pub.labels) * 100:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

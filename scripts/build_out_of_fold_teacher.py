#!/usr/bin/env python3
"""Build an out-of-fold teacher file from k-fold runs (affectline train --folds K --fold I).

    .venv/bin/python scripts/build_out_of_fold_teacher.py artifacts/training/fold5-{0,1,2,3,4} \
        --out artifacts/training/oof-teacher.npz

Each Training image gets the flip-averaged probabilities of the run that held its fold out
(affectline.training.out_of_fold); complete fold sets with other split seeds or k are combined by
the geometric mean. Prints each run's accuracy and happy-vs-sad on its held-out Training images
and the assembled teacher's; PublicTest and PrivateTest are not touched. Then distil from it:

    .venv/bin/affectline train --teacher-file artifacts/training/oof-teacher.npz --teacher-weight 0.5 ...

With --check, any finished fold runs (an incomplete set too, while the others still train) are
only measured on their held-out Training images, and nothing is written:

    .venv/bin/python scripts/build_out_of_fold_teacher.py --check artifacts/training/fold5-0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="see docs/training.md, 'Out-of-fold teachers'")
    ap.add_argument("runs", nargs="+", type=Path, help="fold run directories (each with best.pt: its selected epoch)")
    ap.add_argument("--out", type=Path, default=None, help="teacher file to write (.npz); required unless --check")
    ap.add_argument("--check", action="store_true",
                    help="only measure each run on its held-out Training images (any set of finished fold runs); "
                         "write nothing")
    ap.add_argument("--data", type=Path, default=None,
                    help="fer2013.npz (default: the file the runs were trained on, from their config)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = ap.parse_args(argv)
    if args.out is None and not args.check:
        ap.error("--out is required (or --check to only measure the runs)")
    try:
        import torch
    except ImportError:
        print("error: torch is not installed (pip install 'affectline[train]')", file=sys.stderr)
        return 2
    from affectline.training.data import DataNotFoundError
    from affectline.training.out_of_fold import FoldTeacherError, build_teacher_file, check_runs

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        report = ({"runs": check_runs(args.runs, args.data)} if args.check
                  else build_teacher_file(args.runs, args.out, args.data))
    except (DataNotFoundError, FoldTeacherError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in report["runs"]:
        print(f"{r['run_dir']}: fold {r['fold']} of {r['folds']} (split seed {r['fold_seed']}; epoch {r['epoch']} of "
              f"{r['epochs']}), {r['images']} held-out "
              f"images: accuracy {100 * r['acc']:.2f} %, happy-vs-sad {100 * r['happy_vs_sad']:.2f} %")
    if args.check:
        print(f"checked {len(report['runs'])} run(s); nothing written ({time.perf_counter() - t0:.0f} s)")
        return 0
    print(f"teacher ({report['fold_sets']} fold set(s)) on all {report['images']} Training images, each from a run "
          f"that never trained on it: accuracy {100 * report['acc']:.2f} %, happy-vs-sad "
          f"{100 * report['happy_vs_sad']:.2f} % -> {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`affectline train` / `python -m affectline.training`: train, resume, export.

torch is imported only when the command runs, so the rest of the CLI works without the
`train` extra installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from affectline.training.config import DEVICES, PRECISIONS, TrainConfig
from affectline.training.data import DEFAULT_DATA

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "models"
DESCRIPTION = """\
Train the Affectline expression network on FER2013 (Training split; FER2013 labels with label
smoothing, optionally mixed with FER+ vote distributions),
select the best epoch on PublicTest, fit a temperature on PublicTest, export ONNX + manifest into
the model registry and report PrivateTest metrics. Logs go to RUN_DIR/train.log; RUN_DIR/last.pt
is written every epoch (--resume continues from it) and RUN_DIR/best.pt holds the best epoch."""
EPILOG = """\
examples:
  affectline train --run-dir artifacts/training/vgg32-s0 --epochs 28 --width 32
  affectline train --run-dir artifacts/training/vgg32-s0 --resume        # continue after a stop
  affectline train --run-dir artifacts/training/vgg32-s0 --export-only --model-version 2
see docs/training.md"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="fer2013.npz (default: %(default)s)")
    p.add_argument("--run-dir", type=Path, default=REPO_ROOT / "artifacts/training/run",
                   help="logs and checkpoints (default: %(default)s)")
    d = TrainConfig.default
    p.add_argument("--seed", type=int, default=d("seed"),
                   help="everything random derives from it (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"length of the cosine schedule (default: {d('epochs')}); with --resume it changes "
                        "the remaining schedule of the resumed run")
    p.add_argument("--width", type=int, default=d("width"), help="channels of the first stage; stages are "
                   "w, 2w, 4w, 8w (24: 0.66M params, 32: 1.17M) (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d("batch_size"), help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=d("lr"),
                   help="peak SGD learning rate, cosine decay (default: %(default)s)")
    p.add_argument("--ferplus-weight", type=float, default=d("ferplus_weight"),
                   help="weight of the FER+ vote distribution in the soft target (default: %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=d("label_smoothing"), help="(default: %(default)s)")
    p.add_argument("--mixup", type=float, default=d("mixup_alpha"), metavar="ALPHA",
                   help="blend each batch with a shuffled copy of itself, lam ~ Beta(ALPHA, ALPHA); "
                        "0 turns it off (default: %(default)s)")
    p.add_argument("--pair-weight", type=float, default=d("pair_weight"), metavar="W",
                   help="add W x a happy-vs-sad binary cross-entropy (softmax over those two logits) to "
                        "the loss; 0 turns it off (default: %(default)s)")
    p.add_argument("--ema-decay", type=float, default=d("ema_decay"), metavar="D",
                   help="keep an exponential moving average of the weights (decay D per step, e.g. 0.999) and "
                        "select and export it instead of the raw weights; 0 turns it off (default: %(default)s)")
    p.add_argument("--teacher", default=d("teachers"), metavar="MODELS",
                   help="distil from these registered models (comma-separated NAME/VERSION, e.g. "
                        "affectline-vgg/3,affectline-vgg/4): their geometric-mean probabilities on the training "
                        "images are blended into the targets (needs --teacher-weight)")
    p.add_argument("--teacher-weight", type=float, default=d("teacher_weight"), metavar="W",
                   help="share of the teachers' distribution in the soft target, 0-1 (default: %(default)s)")
    p.add_argument("--teacher-file", type=Path, default=None, metavar="FILE",
                   help="distil from precomputed teacher probabilities on exactly these training images instead "
                        "of registered models, e.g. out-of-fold outputs (scripts/build_out_of_fold_teacher.py); "
                        "needs --teacher-weight")
    p.add_argument("--folds", type=int, default=d("folds"), metavar="K",
                   help="train on the Training images outside fold --fold of a stratified K-fold split (K >= 2): "
                        "one of K runs whose held-out outputs make an out-of-fold teacher; 0: all images "
                        "(default: %(default)s)")
    p.add_argument("--fold", type=int, default=d("fold"), metavar="I",
                   help="the fold held out, 0..K-1 (default: %(default)s)")
    p.add_argument("--fold-seed", type=int, default=d("fold_seed"), metavar="S",
                   help="seed of the k-fold split's shuffle, independent of --seed (default: %(default)s)")
    p.add_argument("--init-from", default=d("init_from"), metavar="MODEL",
                   help="start from a registered model's weights (NAME/VERSION, same --width; BatchNorm statistics "
                        "rebuilt from training images) instead of a random init, e.g. to fine-tune it")
    p.add_argument("--select-flip", action="store_true",
                   help="select the epoch by the flip-averaged PublicTest logits of its weights (image and mirror "
                        "image averaged, as a graph built by scripts/build_flip_averaged_model.py serves)")
    p.add_argument("--min-happy-vs-sad", type=float, default=d("min_happy_vs_sad"), metavar="F",
                   help="only epochs whose PublicTest happy-vs-sad (flip-averaged with --select-flip) is >= F "
                        "(a fraction, e.g. 0.955) may be selected; the best accuracy among them wins, and a run "
                        "where none qualifies exports nothing (default: %(default)s = no floor)")
    p.add_argument("--precision", choices=PRECISIONS, default=d("precision"),
                   help="bf16 autocast or fp32; auto picks bf16 only where the device has native bf16 "
                        "(AVX512-BF16/AMX) and, on a CPU, one training step is timed faster in it at the start "
                        "(a few seconds; logged; a resumed run keeps its precision) (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where the network trains: cpu, cuda (a CUDA build of torch and a GPU), or auto (cuda "
                        "where torch sees a GPU); augmentation stays on the CPU either way (default: %(default)s)")
    p.add_argument("--threads", type=int, default=d("threads"), help="torch CPU threads (default: %(default)s)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    p.add_argument("--eval-limit", type=int, default=0, help="use only the first N PublicTest images (smoke tests)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt (its config wins)")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="train at most N epochs in this call, then stop without exporting (continue with --resume)")
    p.add_argument("--export-only", action="store_true", help="skip training; export RUN_DIR/best.pt")
    p.add_argument("--no-export", action="store_true", help="train only")
    p.add_argument("--models-root", type=Path, default=DEFAULT_MODELS,
                   help="model registry root to export into (default: %(default)s)")
    p.add_argument("--model-name", default="affectline-vgg", help="(default: %(default)s)")
    p.add_argument("--model-version", default="1", help="(default: %(default)s)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser("train", help="train and export our own expression model (needs the train extra)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.data.is_file():
        print(f"affectline train: error: FER2013 data not found at {args.data} (pass --data PATH to fer2013.npz)",
              file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print("affectline train: error: torch is not installed (pip install 'affectline[train]')", file=sys.stderr)
        return 2
    from affectline.training.export import export_run
    from affectline.training.train import BEST, setup_logging, train

    from affectline.models.registry import ModelNotFoundError, ModelRegistry
    from affectline.training.distill import MODELS_ROOT, teacher_refs

    if not 0 <= args.min_happy_vs_sad < 1:
        print(f"affectline train: error: --min-happy-vs-sad is a fraction in [0, 1), e.g. 0.955, not "
              f"{args.min_happy_vs_sad}", file=sys.stderr)
        return 2
    teacher_file = str(args.teacher_file or "")
    try:
        refs = teacher_refs(args.teacher, args.teacher_weight, teacher_file)
    except ValueError:
        print("affectline train: error: --teacher-weight (> 0) goes with one of --teacher or --teacher-file",
              file=sys.stderr)
        return 2
    if teacher_file and not args.teacher_file.is_file():
        print(f"affectline train: error: --teacher-file {teacher_file} not found", file=sys.stderr)
        return 2
    if not args.folds and (args.fold or args.fold_seed):
        print("affectline train: error: --fold and --fold-seed need --folds K", file=sys.stderr)
        return 2
    if args.folds:
        from affectline.training.folds import check_fold

        try:
            check_fold(args.folds, args.fold)
        except ValueError as exc:
            print(f"affectline train: error: --folds/--fold: {exc}", file=sys.stderr)
            return 2
    registry = ModelRegistry(MODELS_ROOT)
    try:
        for ref in refs:  # fail before training starts, not after the data is loaded
            registry.get(ref)
    except ModelNotFoundError as exc:
        print(f"affectline train: error: --teacher: {exc}", file=sys.stderr)
        return 2
    if args.init_from:
        from affectline.training.warm_start import onnx_layers

        try:
            start = registry.get(args.init_from)
            convs, _ = onnx_layers(start.onnx_path)
        except (ModelNotFoundError, ValueError) as exc:
            print(f"affectline train: error: --init-from: {exc}", file=sys.stderr)
            return 2
        if not convs or convs[0][0].shape[0] != args.width:
            print(f"affectline train: error: --init-from {start.key} has first-stage width "
                  f"{convs[0][0].shape[0] if convs else 0}, not --width {args.width}", file=sys.stderr)
            return 2
    if not args.export_only:
        from affectline.training.train import resolve_device

        try:
            resolve_device(args.device)
        except ValueError as exc:
            print(f"affectline train: error: {exc}", file=sys.stderr)
            return 2
        cfg = TrainConfig(data=str(args.data), out_dir=str(args.run_dir), seed=args.seed,
                          epochs=args.epochs or TrainConfig.default("epochs"), width=args.width,
                          batch_size=args.batch_size, lr=args.lr, ferplus_weight=args.ferplus_weight,
                          label_smoothing=args.label_smoothing, mixup_alpha=args.mixup, pair_weight=args.pair_weight,
                          ema_decay=args.ema_decay, teachers=args.teacher, teacher_weight=args.teacher_weight,
                          teacher_file=teacher_file, folds=args.folds, fold=args.fold, fold_seed=args.fold_seed,
                          init_from=args.init_from, select_flip=args.select_flip, min_happy_vs_sad=args.min_happy_vs_sad,
                          precision=args.precision, threads=args.threads, train_limit=args.train_limit, eval_limit=args.eval_limit)
        ckpt = train(cfg, resume=args.resume, stop_after=args.stop_after,
                     epochs=(args.epochs or 0) if args.resume else 0, device=args.device)
        if ckpt["epoch"] + 1 < TrainConfig.from_dict(ckpt["config"]).epochs:
            return 0  # stopped early on purpose: export when the run is complete (or use --export-only)
    if args.no_export:
        return 0
    if not (args.run_dir / BEST).is_file():
        print(f"affectline train: error: no checkpoint {args.run_dir / BEST} to export (with --min-happy-vs-sad: "
              "no epoch reached the floor; see RUN_DIR/train.log)", file=sys.stderr)
        return 2
    setup_logging(args.run_dir)
    export_run(args.run_dir, args.data, args.models_root, args.model_name, args.model_version)
    return 0

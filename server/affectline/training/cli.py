"""`affectline train` and `affectline evaluate` (`python -m affectline.training` is `train`).

torch is imported only when `train` runs, so the rest of the CLI works without the `train`
extra installed; `evaluate` needs no torch.
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
smoothing, optionally mixed with FER+ vote distributions), select the best epoch on PublicTest,
fit a temperature on PublicTest, export ONNX + manifest into the model registry (optionally
flip-averaged, with fp16/int8 variants measured) and report PrivateTest metrics. Logs go to
RUN_DIR/train.log; RUN_DIR/last.pt is written every epoch (--resume continues from it) and
RUN_DIR/best.pt holds the best epoch."""
EPILOG = """\
examples:
  # the recipe of affectline-vgg/6 (width 48, 60 epochs of an 80-epoch schedule, flip-averaged)
  affectline train --run-dir artifacts/training/v6 --seed 2 --epochs 80 --train-epochs 60 --width 48 \\
      --mixup 0.2 --ema-decay 0.999 --select-flip --min-happy-vs-sad 0.955 --flip-average --model-version 7
  affectline train --run-dir artifacts/training/v6 --resume --flip-average --model-version 7  # after a stop
  affectline train --run-dir artifacts/training/v6 --export-only --flip-average --model-version 7
see docs/training.md"""
EVALUATE_DESCRIPTION = """\
Evaluate a registered model on FER2013 PublicTest and/or PrivateTest through the serving path
(the engine `serve` and `classify` run, same precision variant): accuracy, macro-F1, per-class
recall, happy-vs-sad, calibration and the confusion matrix."""


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
    p.add_argument("--train-epochs", type=int, default=d("train_epochs"), metavar="N",
                   help="end the run after epoch N of the --epochs schedule, which keeps its length, and export "
                        "(affectline-vgg/6: 60 of 80); 0: the whole schedule (default: %(default)s)")
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
    p.add_argument("--ema-decay", type=float, default=d("ema_decay"), metavar="D",
                   help="keep an exponential moving average of the weights (decay D per step, e.g. 0.999) and "
                        "select and export it instead of the raw weights; 0 turns it off (default: %(default)s)")
    p.add_argument("--select-flip", action="store_true",
                   help="select the epoch by the flip-averaged PublicTest logits of its weights (image and mirror "
                        "image averaged, as the graph --flip-average exports serves)")
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
    p.add_argument("--flip-average", action="store_true",
                   help="export with test-time flip averaging folded into the graph (the logits of each crop and "
                        "of its mirror image averaged) and its temperature re-fitted on PublicTest, as every shipped "
                        "affectline-vgg model since /5")
    p.add_argument("--no-variants", action="store_true",
                   help="export model.onnx only, without the fp16 and int8 variants (built and measured by default)")
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


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    from affectline.models.registry import DEFAULT_MODEL

    p = subparsers.add_parser("evaluate", help="FER2013 accuracy, macro-F1, happy-vs-sad of a registered model",
                              description=EVALUATE_DESCRIPTION)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="registered model NAME[/VERSION] (default: %(default)s, its latest version)")
    p.add_argument("--split", choices=("public", "private", "both"), default="both", help="(default: %(default)s)")
    p.add_argument("--variant", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                   help="precision variant (default: auto, what `serve` and `classify` run on this host)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="fer2013.npz (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--update-manifest", action="store_true",
                   help="write the measured figures into the model's manifest.json (needs --split both and "
                        "--variant fp32; for a converted model such as fer-mini-xception)")
    return p


def run(args: argparse.Namespace) -> int:
    if getattr(args, "command", "train") == "evaluate":
        return run_evaluate(args)
    return run_train(args)


def error(command: str, message: str) -> int:
    print(f"affectline {command}: error: {message}", file=sys.stderr)
    return 2


def run_evaluate(args: argparse.Namespace) -> int:
    from affectline.models.registry import ModelRegistry
    from affectline.training.evaluate import SPLIT_NAMES, evaluate, format_report, update_manifest

    if not args.data.is_file():
        return error("evaluate", f"FER2013 data not found at {args.data} (pass --data PATH to fer2013.npz)")
    if args.update_manifest and (args.split != "both" or args.variant != "fp32"):
        return error("evaluate", "--update-manifest records the fp32 model on both splits: add --split both "
                                 "--variant fp32")
    registered = ModelRegistry().get(args.model)  # ModelNotFoundError: a one-line error from cli.main
    splits = ["public", "private"] if args.split == "both" else [args.split]
    model, results = evaluate(registered, args.data, splits, args.variant, args.batch_size)
    print(f"model {model.key} variant {model.variant} ({model.onnx_path}), providers {model.providers}")
    for split, r in results.items():
        print("\n" + format_report(SPLIT_NAMES[split], r))
    if args.update_manifest:
        path = update_manifest(registered, results, "affectline evaluate (EmotionModel.predict on the npz arrays, "
                                                    "onnxruntime CPU fp32)")
        print(f"\nupdated {path}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    if not args.data.is_file():
        return error("train", f"FER2013 data not found at {args.data} (pass --data PATH to fer2013.npz)")
    try:
        import torch  # noqa: F401
    except ImportError:
        return error("train", "torch is not installed (pip install 'affectline[train]')")
    from affectline.training.export import publish
    from affectline.training.train import BEST, resolve_device, setup_logging, train

    if not 0 <= args.min_happy_vs_sad < 1:
        return error("train", f"--min-happy-vs-sad is a fraction in [0, 1), e.g. 0.955, not {args.min_happy_vs_sad}")
    if not args.export_only:
        try:
            resolve_device(args.device)
        except ValueError as exc:
            return error("train", str(exc))
        cfg = TrainConfig(data=str(args.data), out_dir=str(args.run_dir), seed=args.seed,
                          epochs=args.epochs or TrainConfig.default("epochs"), train_epochs=args.train_epochs,
                          width=args.width, batch_size=args.batch_size, lr=args.lr, ferplus_weight=args.ferplus_weight,
                          label_smoothing=args.label_smoothing, mixup_alpha=args.mixup, ema_decay=args.ema_decay,
                          select_flip=args.select_flip, min_happy_vs_sad=args.min_happy_vs_sad,
                          precision=args.precision, threads=args.threads, train_limit=args.train_limit,
                          eval_limit=args.eval_limit)
        ckpt = train(cfg, resume=args.resume, stop_after=args.stop_after,
                     epochs=(args.epochs or 0) if args.resume else 0, device=args.device)
        if ckpt["epoch"] + 1 < TrainConfig.from_dict(ckpt["config"]).final_epoch:
            return 0  # stopped early on purpose: export when the run is complete (or use --export-only)
    if args.no_export:
        return 0
    if not (args.run_dir / BEST).is_file():
        return error("train", f"no checkpoint {args.run_dir / BEST} to export (with --min-happy-vs-sad: no epoch "
                              "reached the floor; see RUN_DIR/train.log)")
    setup_logging(args.run_dir)
    publish(args.run_dir, args.data, args.models_root, args.model_name, args.model_version,
            flip_average=args.flip_average, variants=not args.no_variants)
    return 0

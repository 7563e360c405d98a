"""An out-of-fold teacher file from finished k-fold runs (training.folds).

Each training image gets the flip-averaged probabilities (softmax of the mean of the logits on
the crop and on its mirror, at temperature 1) of the one run that held its fold out. Several
complete fold sets (different split seeds or k) are combined by the normalised geometric mean,
as registered teachers are (training.distill). The result is written with
`distill.save_teacher_file`, bound to the training images it was computed on, for
`affectline train --teacher-file FILE --teacher-weight W`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectline.training.config import TrainConfig
from affectline.training.data import Split, load_split
from affectline.training.calibrate import softmax
from affectline.training.distill import geometric_mean, save_teacher_file
from affectline.training.evaluate import happy_vs_sad
from affectline.training.folds import fold_of, out_of_fold
from affectline.training.train import BEST, flip_averaged_logits, load_model, predict_logits


class FoldTeacherError(ValueError):
    """The runs do not make an out-of-fold teacher (no selected epoch, not fold runs, folds missing)."""


@dataclass(frozen=True)
class FoldRun:
    run_dir: Path
    cfg: TrainConfig
    model: torch.nn.Module
    epoch: int  # the selected epoch (1-based) of cfg.epochs
    best_sha256: str


def load_fold_run(run_dir: Path) -> FoldRun:
    """A fold run's selected weights (its best.pt alone, so a finished run can travel without its
    32-MB last.pt); FoldTeacherError when there is none or the run is not a fold run. Runs
    stopped early are accepted (v6's recipe stops after 60 of 80 epochs): the selected epoch and
    the schedule's length go into the description."""
    if not (run_dir / BEST).is_file():
        raise FoldTeacherError(f"{run_dir}: no {BEST} (a run with a selected epoch)")
    model, cfg, best = load_model(run_dir / BEST)
    if cfg.folds < 2:
        raise FoldTeacherError(f"{run_dir}: not a fold run (trained with --folds 0, on every training image)")
    return FoldRun(run_dir, cfg, model, best["epoch"] + 1,
                   hashlib.sha256((run_dir / BEST).read_bytes()).hexdigest())


def fold_sets(runs: list[FoldRun]) -> dict[tuple[int, int], dict[int, FoldRun]]:
    """Runs grouped by (k, split seed), each group keyed by held-out fold; FoldTeacherError
    unless every group has each of its folds exactly once."""
    sets: dict[tuple[int, int], dict[int, FoldRun]] = {}
    for r in runs:
        group = sets.setdefault((r.cfg.folds, r.cfg.fold_seed), {})
        if r.cfg.fold in group:
            raise FoldTeacherError(f"fold {r.cfg.fold} of {r.cfg.folds} (split seed {r.cfg.fold_seed}) twice: "
                                   f"{group[r.cfg.fold].run_dir} and {r.run_dir}")
        group[r.cfg.fold] = r
    for (k, seed), group in sets.items():
        missing = sorted(set(range(k)) - set(group))
        if missing:
            raise FoldTeacherError(f"{k}-fold split seed {seed}: no run for fold(s) {missing}")
    return sets


def held_out_outputs(run: FoldRun, train: Split) -> tuple[np.ndarray, dict[str, Any]]:
    """One run on the Training images of the fold it held out (`train` as the runs loaded it,
    before their fold was removed): their flip-averaged probabilities, and what it measured
    there (images, selected epoch, accuracy, happy-vs-sad)."""
    k, f, seed = run.cfg.folds, run.cfg.fold, run.cfg.fold_seed
    mine = fold_of(train.labels, k, seed) == f
    pixels, labels = train.pixels[mine], train.labels[mine]
    logits = flip_averaged_logits(run.model, pixels, predict_logits(run.model, pixels))
    report = {"run_dir": str(run.run_dir), "folds": k, "fold": f, "fold_seed": seed, "images": int(mine.sum()),
              "epoch": run.epoch, "epochs": run.cfg.epochs,
              "acc": float((logits.argmax(1) == labels).mean()),
              "happy_vs_sad": happy_vs_sad(logits, labels)}
    return softmax(logits).astype(np.float32), report


def training_images(runs: list[FoldRun], data: Path | None = None) -> Split:
    """The Training split the runs loaded (from `data`, default the file they name, with their
    --train-limit); FoldTeacherError when they did not all see the same images."""
    for r in runs[1:]:
        if (r.cfg.data, r.cfg.train_limit) != (runs[0].cfg.data, runs[0].cfg.train_limit):
            raise FoldTeacherError(f"{r.run_dir} trained on {r.cfg.data} (train limit {r.cfg.train_limit}), "
                                   f"{runs[0].run_dir} on {runs[0].cfg.data} (train limit {runs[0].cfg.train_limit})")
    return load_split(Path(data or runs[0].cfg.data), "train").first(runs[0].cfg.train_limit)


def check_runs(run_dirs: list[Path], data: Path | None = None) -> list[dict[str, Any]]:
    """Each run measured on its held-out images, for any set of finished fold runs (an
    incomplete set too: a check while the remaining folds still train). Writes nothing."""
    runs = [load_fold_run(Path(d)) for d in run_dirs]
    train = training_images(runs, data)
    return [held_out_outputs(r, train)[1] for r in runs]


def build_teacher_file(run_dirs: list[Path], out: Path, data: Path | None = None) -> dict[str, Any]:
    """Writes the teacher file for the Training split as the runs loaded it (from `data`, default
    the file the runs name, with their --train-limit; before their fold was removed), and returns
    what it measured: each run's accuracy and happy-vs-sad on its held-out images, and the
    assembled teacher's over all of them."""
    runs = [load_fold_run(Path(d)) for d in run_dirs]
    sets = fold_sets(runs)  # refuse an incomplete set before loading the data
    train = training_images(runs, data)
    per_run, assembled, described = [], [], []
    for (k, seed), group in sorted(sets.items()):
        held: dict[int, np.ndarray] = {}
        for f, r in sorted(group.items()):
            held[f], report = held_out_outputs(r, train)
            per_run.append(report)
            described.append(f"{r.run_dir} (fold {f} of {k}, split seed {seed}, epoch {r.epoch} of {r.cfg.epochs}, "
                             f"best.pt sha256 {r.best_sha256[:16]})")
        assembled.append(out_of_fold(held, fold_of(train.labels, k, seed)))
    probs = geometric_mean(assembled)
    save_teacher_file(out, probs, train.pixels, described)
    return {"runs": per_run, "fold_sets": len(sets), "images": len(train),
            "acc": float((probs.argmax(1) == train.labels).mean()),
            "happy_vs_sad": happy_vs_sad(probs, train.labels)}

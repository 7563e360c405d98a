"""K-fold splits of the Training images, for out-of-fold teachers.

A teacher's output on an image it was trained on says little the label does not (it has fitted
that label); its output on an image it never saw is a second opinion. With the Training images
split into k folds and one run per fold that trains on the other k-1, every image gets the
output of the one run that held it out (`out_of_fold`): a teacher distribution for distillation
(training.distill) made entirely of out-of-sample predictions.

Pure numpy; the split depends only on the labels, k and the split seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from affectline.training.data import Split


def fold_of(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each image, stratified by label: each class's images are shuffled
    (by seed and class) and dealt round-robin, so every fold holds each class's share to within
    one image, and fold sizes differ by at most one image per class."""
    if k < 2:
        raise ValueError(f"a k-fold split needs k >= 2, not {k}")
    labels = np.asarray(labels)
    folds = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        order = np.random.default_rng([seed, int(c)]).permutation(len(rows))
        folds[rows[order]] = np.arange(len(rows)) % k
    return folds


def check_fold(k: int, fold: int) -> None:
    """ValueError unless (k, fold) names a held-out fold: k >= 2 and 0 <= fold < k."""
    if k < 2 or not 0 <= fold < k:
        raise ValueError(f"fold {fold} of {k}: needs k >= 2 folds and 0 <= fold < k")


def without_fold(split: Split, k: int, fold: int, seed: int) -> Split:
    """The images a fold's run trains on: all but those of `fold`."""
    check_fold(k, fold)
    keep = fold_of(split.labels, k, seed) != fold
    return Split(split.pixels[keep], split.labels[keep], split.votes[keep])


def out_of_fold(held_out: Mapping[int, np.ndarray], folds: np.ndarray) -> np.ndarray:
    """Assemble one [N,C] array from each fold's outputs on its own held-out images.

    held_out[f] holds the rows of the images with folds == f, in their order; every fold of
    0..max(folds) must be present exactly once, with exactly its images' rows.
    """
    k = int(folds.max()) + 1
    if sorted(held_out) != list(range(k)):
        raise ValueError(f"out-of-fold outputs need every fold 0..{k - 1} once, got {sorted(held_out)}")
    width = {a.shape[1] for a in held_out.values()}
    if len(width) != 1:
        raise ValueError(f"fold outputs have different widths {sorted(width)}")
    out = np.empty((len(folds), width.pop()), np.float32)
    for f, rows in held_out.items():
        mine = folds == f
        if len(rows) != int(mine.sum()):
            raise ValueError(f"fold {f}: {len(rows)} output rows for {int(mine.sum())} held-out images")
        out[mine] = rows
    return out

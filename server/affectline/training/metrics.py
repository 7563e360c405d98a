"""Classification metrics on probability matrices (numpy only, no torch needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from affectline.training.data import CLASS_NAMES


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (Guo et al. 2017)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(float((pred[sel] == labels[sel]).mean()) - float(conf[sel].mean()))
    return float(ece)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


HAPPY, SAD = CLASS_NAMES.index("happy"), CLASS_NAMES.index("sad")


def happy_vs_sad(scores: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Among faces labelled happy or sad (or the given rows of them): is score(happy) >=
    score(sad) exactly when the label is happy. Scores may be probabilities or logits."""
    if rows is None:
        rows = np.flatnonzero((labels == HAPPY) | (labels == SAD))
    if len(rows) == 0:
        return float("nan")
    return float(((scores[rows, HAPPY] >= scores[rows, SAD]) == (labels[rows] == HAPPY)).mean())


def classification_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall, confusion, happy-vs-sad, ECE and NLL.

    happy-vs-sad: among faces labelled happy or sad, is p(happy) >= p(sad) exactly when the
    label is happy.
    """
    k = len(CLASS_NAMES)
    pred = probs.argmax(1)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    recall = tp / np.maximum(cm.sum(1), 1)
    precision = tp / np.maximum(cm.sum(0), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1.mean()),
        "recall": {c: float(r) for c, r in zip(CLASS_NAMES, recall)},
        "confusion": cm.tolist(),
        "happy_vs_sad": happy_vs_sad(probs, labels),
        "ece": expected_calibration_error(probs, labels),
        "nll": nll(probs, labels),
    }


def rounded_report(r: dict[str, Any]) -> dict[str, Any]:
    """A report (or a dict of per-class figures) with its floats rounded to 4 places, for manifests."""
    return {k: (round(v, 4) if isinstance(v, float) else
                {c: round(x, 4) for c, x in v.items()} if isinstance(v, dict) else v) for k, v in r.items()}


def manifest_accuracy(public: dict[str, Any], private: dict[str, Any], measured_with: str,
                      onnx_sha256: str) -> dict[str, Any]:
    """The manifest's `accuracy` entry from the PublicTest and PrivateTest reports (the keys
    `affectline models` and the engine's variant choice read)."""
    return {
        "fer2013_private_test": round(private["accuracy"], 4),
        "fer2013_public_test": round(public["accuracy"], 4),
        "fer2013_private_test_macro_f1": round(private["macro_f1"], 4),
        "fer2013_private_test_happy_vs_sad": round(private["happy_vs_sad"], 4),
        "per_class_recall": {"fer2013_private_test": rounded_report(private["recall"]),
                             "fer2013_public_test": rounded_report(public["recall"])},
        "measured_with": measured_with,
        "onnx_sha256": onnx_sha256,
    }


def happy_vs_sad_where_ferplus_agrees(probs: np.ndarray, labels: np.ndarray, votes: np.ndarray) -> tuple[float, int]:
    """happy-vs-sad (as in classification_report) over the happy/sad faces whose FER+ votes
    ([N,7] in CLASS_NAMES order) favour the FER2013 label over the other class of the pair.

    Context for the FER2013 figure, whose labels are noisy: returns (accuracy, faces counted).
    """
    rows = np.flatnonzero((labels == HAPPY) | (labels == SAD))
    other = np.where(labels[rows] == HAPPY, SAD, HAPPY)
    keep = rows[votes[rows, labels[rows]] > votes[rows, other]]
    return happy_vs_sad(probs, labels, keep), int(len(keep))

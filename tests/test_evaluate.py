"""Classification metrics (affectline.training.metrics) on exact examples, and `affectline evaluate`."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from fer_data import FER_NPZ, REPO_ROOT

from affectline.training.data import CLASS_NAMES
from affectline.training.metrics import classification_report, happy_vs_sad_where_ferplus_agrees

H, S, N = CLASS_NAMES.index("happy"), CLASS_NAMES.index("sad"), CLASS_NAMES.index("neutral")


def probs_for(*pairs: tuple[float, float]) -> np.ndarray:
    """Rows with p(happy), p(sad) as given and the rest of the mass on neutral."""
    p = np.zeros((len(pairs), 7))
    for i, (ph, ps) in enumerate(pairs):
        p[i, H], p[i, S], p[i, N] = ph, ps, 1 - ph - ps
    return p


def test_happy_vs_sad_counts_only_faces_whose_votes_back_the_label() -> None:
    labels = np.array([H, H, S, S, N])
    probs = probs_for((0.6, 0.1), (0.1, 0.3), (0.2, 0.1), (0.1, 0.5), (0.0, 0.9))
    votes = np.zeros((5, 7))
    votes[0, H] = 1.0  # backs its label: counted, right
    votes[1, [H, S]] = 0.5  # a tie backs neither: not counted (the model is wrong here)
    votes[2, S], votes[2, N] = 0.3, 0.7  # sad over happy, though neutral wins: counted, wrong
    votes[3, H] = 0.8  # votes say happy: not counted
    votes[4, S] = 1.0  # not a happy/sad label: never counted
    acc, n = happy_vs_sad_where_ferplus_agrees(probs, labels, votes)
    assert (acc, n) == (0.5, 2)
    assert classification_report(probs, labels)["happy_vs_sad"] == 0.5  # faces 0 and 3 of 4 right


def test_happy_vs_sad_where_ferplus_agrees_without_such_faces() -> None:
    acc, n = happy_vs_sad_where_ferplus_agrees(probs_for((0.5, 0.5)), np.array([N]), np.zeros((1, 7)))
    assert n == 0 and np.isnan(acc)


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affectline", "evaluate", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT)


@pytest.mark.skipif(not FER_NPZ.is_file(), reason=f"FER2013 data not available at {FER_NPZ}")
def test_evaluate_prints_both_happy_vs_sad_figures() -> None:
    result = evaluate("--split", "public", "--model", "affectline-vgg-fast", "--variant", "fp32")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model affectline-vgg-fast/1 variant fp32" in out and "PrivateTest" not in out
    plain = re.search(r"happy-vs-sad\s+([\d.]+) % \(n=1548", out)
    backed = re.search(r"([\d.]+) % on the (\d+) of them whose FER\+ votes", out)
    assert plain and backed, out
    assert 0 < int(backed.group(2)) < 1548
    assert float(backed.group(1)) > float(plain.group(1))  # label noise: the backed subset is easier
    accuracy = float(re.search(r"accuracy\s+([\d.]+) %", out).group(1))
    assert accuracy == pytest.approx(70.38, abs=0.01)  # the manifest's fp32 PublicTest figure
    assert "confusion matrix" in out and "macro-F1" in out and "per-class recall" in out


def test_evaluate_says_what_is_missing(tmp_path) -> None:
    result = evaluate("--data", str(tmp_path / "none.npz"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"affectline evaluate: error: FER2013 data not found at {tmp_path / 'none.npz'} (pass --data PATH to fer2013.npz)"]
    if FER_NPZ.is_file():
        result = evaluate("--model", "no-such-model")
        assert result.returncode == 2 and "'no-such-model' not found" in result.stderr

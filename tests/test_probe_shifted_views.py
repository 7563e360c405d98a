"""scripts/probe_shifted_views.py: the shift on exact examples, and its error paths (no data needed)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "probe_shifted_views.py"


def _probe():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("probe_shifted_views", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_shift_moves_content_and_repeats_the_border() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    shifted = _probe().shifted
    assert shifted(a, 2, 0)[0].tolist() == [[0, 0, 0, 1], [4, 4, 4, 5], [8, 8, 8, 9]]
    assert shifted(a, -1, 0)[0].tolist() == [[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]]
    assert shifted(a, 0, -1)[0].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11], [8, 9, 10, 11]]
    assert shifted(a, 0, 0)[0].tolist() == a[0].tolist()


def test_errors_are_clear(tmp_path: Path) -> None:
    run = lambda *args: subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,  # noqa: E731
                                       text=True, timeout=120)
    missing = run("affectline-vgg/6", "--data", str(tmp_path / "none.npz"))
    assert missing.returncode == 2 and "FER2013 data not found" in missing.stderr
    unknown = run("nope/1", "--data", str(tmp_path / "none.npz"))
    assert unknown.returncode == 2 and "nope" in unknown.stderr

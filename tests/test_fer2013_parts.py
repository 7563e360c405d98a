"""scripts/fer2013_parts.py: split and join round-trip on a small synthetic npz, and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "fer2013_parts.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _source(path: Path, rows: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"pixels": rng.integers(0, 256, (rows, 4, 4), dtype=np.uint8),
              "label": rng.integers(0, 7, rows, dtype=np.uint8),
              "ferplus_votes": rng.integers(0, 10, (rows, 10), dtype=np.uint8)}
    np.savez_compressed(path, **arrays)
    return arrays


def test_split_then_join_gives_back_every_array(tmp_path: Path) -> None:
    arrays = _source(tmp_path / "src.npz")
    split = _run("split", str(tmp_path / "src.npz"), str(tmp_path / "parts"), "--parts", "3")
    assert split.returncode == 0, split.stderr
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "part-1-of-3.npz", "part-2-of-3.npz", "part-3-of-3.npz"]
    with np.load(tmp_path / "parts" / "part-2-of-3.npz") as part:
        assert len(part["label"]) in (3, 4)  # 11 rows in three contiguous ranges
    joined = _run("join", str(tmp_path / "parts"), str(tmp_path / "out.npz"))
    assert joined.returncode == 0, joined.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == sorted(arrays)
        for name, a in arrays.items():
            np.testing.assert_array_equal(out[name], a)
    # both ends print the same content digest
    assert split.stdout.splitlines()[-1] == joined.stdout.splitlines()[-1]
    assert split.stdout.splitlines()[-1].startswith("content sha256 ")


def test_a_missing_or_damaged_part_is_an_error(tmp_path: Path) -> None:
    _source(tmp_path / "src.npz")
    assert _run("split", str(tmp_path / "src.npz"), str(tmp_path / "parts"), "--parts", "2").returncode == 0
    first = tmp_path / "parts" / "part-1-of-2.npz"
    kept = first.read_bytes()
    first.unlink()
    missing = _run("join", str(tmp_path / "parts"), str(tmp_path / "out.npz"))
    assert missing.returncode == 2 and "lacks part-1-of-2.npz" in missing.stderr
    first.write_bytes(kept)
    with np.load(first) as part:  # one pixel of the part changed after the split
        tampered = {n: part[n].copy() for n in part.files}
    tampered["pixels"][0, 0, 0] ^= 1
    np.savez_compressed(first, **tampered)
    damaged = _run("join", str(tmp_path / "parts"), str(tmp_path / "out.npz"))
    assert damaged.returncode == 2 and "do not match" in damaged.stderr
    assert not (tmp_path / "out.npz").exists()


def test_bad_arguments_are_clear(tmp_path: Path) -> None:
    absent = _run("split", str(tmp_path / "none.npz"), str(tmp_path / "parts"))
    assert absent.returncode == 2 and "no such file" in absent.stderr
    empty = _run("join", str(tmp_path), str(tmp_path / "out.npz"))
    assert empty.returncode == 2 and "no part-K-of-N.npz" in empty.stderr
    _source(tmp_path / "src.npz")
    zero = _run("split", str(tmp_path / "src.npz"), str(tmp_path / "parts"), "--parts", "0")
    assert zero.returncode == 2 and "at least 1" in zero.stderr

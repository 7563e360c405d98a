#!/usr/bin/env python3
"""Split fer2013.npz into parts small enough for the device tool's carry, and join them back.

    .venv/bin/python scripts/fer2013_parts.py split ../shared/data/fer2013/fer2013.npz artifacts/fer-parts --parts 2
    python3 scripts/fer2013_parts.py join artifacts/fer-parts /tmp/fer2013.npz

A lent GPU machine gets only what one call carries (64 MiB with the working tree), and the npz
is 78 MB of nearly incompressible pixels, so it travels in parts, one call each, kept on the
machine between calls (docs/training.md, "On a GPU"). `split` cuts every array into contiguous
row ranges (part-K-of-N.npz, compressed); `join` concatenates them in order and checks the
result against the source's content digest recorded in each part. Both print that digest.
The parts are the data, not a copy for the repository: keep them in a git-ignored folder.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np

PART_NAME = "part-{k}-of-{n}.npz"
PART_PATTERN = re.compile(r"part-(\d+)-of-(\d+)\.npz")
DIGEST_KEY = "__content_sha256__"


class PartsError(Exception):
    """Missing, foreign or inconsistent parts: a message for the user, exit status 2."""


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def split(src: Path, out_dir: Path, parts: int) -> str:
    if parts < 1:
        raise PartsError(f"--parts must be at least 1, not {parts}")
    if not src.is_file():
        raise PartsError(f"no such file: {src}")
    with np.load(src) as d:
        arrays = {name: d[name] for name in d.files}
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise PartsError(f"{src}: arrays have different row counts {sorted(rows)}; nothing to split by rows")
    digest = content_digest(arrays)
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, rows.pop(), parts + 1).astype(int)
    for k in range(parts):
        chunk = {name: a[bounds[k]:bounds[k + 1]] for name, a in arrays.items()}
        path = out_dir / PART_NAME.format(k=k + 1, n=parts)
        np.savez_compressed(path, **chunk, **{DIGEST_KEY: np.array(digest)})
        print(f"{path}: rows {bounds[k]}-{bounds[k + 1] - 1}, {path.stat().st_size / 1e6:.1f} MB", flush=True)
    return digest


def join(in_dir: Path, out: Path) -> str:
    found = [m for p in in_dir.glob("part-*-of-*.npz") if (m := PART_PATTERN.fullmatch(p.name))]
    if not found:
        raise PartsError(f"no part-K-of-N.npz files in {in_dir}")
    counts = {int(m.group(2)) for m in found}
    if len(counts) != 1:
        raise PartsError(f"{in_dir} mixes parts of different splits (of {sorted(counts)})")
    n = counts.pop()
    paths = [in_dir / PART_NAME.format(k=k, n=n) for k in range(1, n + 1)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise PartsError(f"{in_dir} lacks {', '.join(missing)}")
    chunks, digests = [], set()
    for path in paths:
        with np.load(path) as d:
            digests.add(str(d[DIGEST_KEY]))
            chunks.append({name: d[name] for name in d.files if name != DIGEST_KEY})
    if len(digests) != 1:
        raise PartsError(f"{in_dir}: the parts come from different sources")
    arrays = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    digest = content_digest(arrays)
    if digest != digests.pop():
        raise PartsError(f"{in_dir}: the joined arrays do not match the source's digest (a damaged part?)")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"{out}: {len(next(iter(arrays.values())))} rows from {n} parts", flush=True)
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="cut an npz into part-K-of-N.npz files")
    sp.add_argument("src", type=Path, help="the npz to split, e.g. ../shared/data/fer2013/fer2013.npz")
    sp.add_argument("out_dir", type=Path, help="folder for the parts (keep it git-ignored)")
    sp.add_argument("--parts", type=int, default=2, help="how many parts (default: %(default)s)")
    jp = sub.add_parser("join", help="rebuild the npz from its parts and check its digest")
    jp.add_argument("in_dir", type=Path, help="folder holding every part-K-of-N.npz")
    jp.add_argument("out", type=Path, help="the npz to write")
    args = ap.parse_args(argv)
    try:
        digest = split(args.src, args.out_dir, args.parts) if args.command == "split" else join(args.in_dir, args.out)
    except PartsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"content sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Classify the facial expression in image files (the core of `affectline classify`)."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from affectline.face_crop import FaceCrop, crop_image_file
from affectline.inference.engine import EmotionModel

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".pgm", ".ppm", ".pbm", ".pnm"})
FER_CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class Classification:
    path: Path
    label: str | None  # None when no face was found or the file could not be read
    probs: dict[str, float] | None  # class name -> probability, in the model's class order
    face_found: bool
    error: str | None = None  # set when the file could not be read/decoded


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given (whatever their extension); directories -> their image files, recursively, sorted."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            yield p


def classify_files(paths: list[Path], model: EmotionModel, *, batch_size: int = 64) -> Iterator[Classification]:
    """Yield one Classification per file, in input order, batching face crops through the model.
    A file that cannot be read gives a row with `error` set; it never stops the run."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    size = model.crop_size
    pending: list[tuple[Path, FaceCrop | str]] = []

    def flush() -> Iterator[Classification]:
        crops = [c.crop for _, c in pending if isinstance(c, FaceCrop) and c.crop is not None]
        probs = model.predict(np.stack(crops)) if crops else np.zeros((0, len(model.class_names)), np.float32)
        rows = iter(probs)
        for path, c in pending:
            if isinstance(c, str):
                yield Classification(path, None, None, False, c)
            elif c.crop is None:
                yield Classification(path, None, None, False)
            else:
                p = next(rows)
                yield Classification(path, model.class_names[int(p.argmax())],
                                     {n: float(v) for n, v in zip(model.class_names, p)}, True)
        pending.clear()

    n_crops = 0
    for path in expand_paths(paths):
        try:
            crop: FaceCrop | str = crop_image_file(path, size)
        except Exception as e:  # noqa: BLE001 - any decode failure becomes an error row
            crop = f"{type(e).__name__}: {e}"
        pending.append((path, crop))
        if isinstance(crop, FaceCrop) and crop.crop is not None:
            n_crops += 1
        if n_crops >= batch_size:
            yield from flush()
            n_crops = 0
    yield from flush()


def write_results(results: Iterable[Classification], fmt: Literal["csv", "json"], out: TextIO, *,
                  class_names: Sequence[str] | None = None) -> int:
    """Stream results as csv (header file,label,<class probs...>,face_found,error) or a json list.
    Returns the number of rows written. Class columns come from `class_names`, else from the
    first row that has probabilities, else FER_CLASS_NAMES."""
    it = iter(results)
    head: list[Classification] = []
    if class_names is None:
        for r in it:
            head.append(r)
            if r.probs is not None:
                break
        with_probs = [r for r in head if r.probs is not None]
        class_names = tuple(with_probs[0].probs) if with_probs and with_probs[0].probs else FER_CLASS_NAMES
    rows = itertools.chain(head, it)
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["file", "label", *class_names, "face_found", "error"])
        for r in rows:
            probs = [f"{r.probs[c]:.6f}" for c in class_names] if r.probs else [""] * len(class_names)
            w.writerow([str(r.path), r.label or "", *probs, int(r.face_found), r.error or ""])
            n += 1
    elif fmt == "json":
        out.write("[")
        for r in rows:
            d: dict[str, Any] = {"file": str(r.path), "label": r.label,
                                 "probs": {c: round(r.probs[c], 6) for c in class_names} if r.probs else None,
                                 "face_found": r.face_found, "error": r.error}
            out.write((",\n " if n else "\n ") + json.dumps(d))
            n += 1
        out.write("\n]\n" if n else "]\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return n

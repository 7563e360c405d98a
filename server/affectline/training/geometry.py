"""Crop-geometry measurements for the model card (`python -m affectline.training.geometry`).

1. Where are the eyes in a FER2013 frame? OpenCV's Haar eye cascade on 4x-upscaled crops; a
   crop counts only when exactly one eye is found in each upper half-quadrant, so the
   medians are not polluted by eyebrows, nostrils or glasses rims.
2. How much does framing matter? Accuracy of registered models on PrivateTest crops that were
   shifted or zoomed by a few percent (edges replicated, like the server's own crops).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import cv2
import numpy as np

from affectline.face_crop import resize
from affectline.inference.engine import EmotionModel
from affectline.models.registry import ModelRegistry
from affectline.training.data import DEFAULT_DATA

UPSCALE = 4
EYE_CASCADE = "haarcascade_eye.xml"


def eye_positions(pixels: np.ndarray) -> np.ndarray:
    """uint8 [N,48,48] -> float [M,4] (left x, left y, right x, right y) as fractions of the frame,
    for the M crops where the cascade finds one eye on each side of the upper half."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / EYE_CASCADE))  # type: ignore[attr-defined]
    if cascade.empty():
        raise RuntimeError(f"could not load {EYE_CASCADE}")
    side = pixels.shape[1] * UPSCALE
    found = []
    for img in pixels:
        big = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)
        eyes = cascade.detectMultiScale(big, scaleFactor=1.05, minNeighbors=5, minSize=(side // 10, side // 10),
                                        maxSize=(side // 3, side // 3))
        centres = [((x + w / 2) / side, (y + h / 2) / side) for x, y, w, h in eyes if (y + h / 2) / side < 0.6]
        left = [c for c in centres if c[0] < 0.5]  # image left = the subject's right eye
        right = [c for c in centres if c[0] >= 0.5]
        if len(left) == 1 and len(right) == 1:
            found.append((*left[0], *right[0]))
    return np.array(found, dtype=np.float64).reshape(-1, 4)


def reframe(pixels: np.ndarray, dx: float = 0.0, dy: float = 0.0, zoom: float = 1.0) -> np.ndarray:
    """Shift the face by (dx, dy) of the frame and scale it by `zoom` about the centre (>1 = tighter crop)."""
    n, h, w = pixels.shape
    m = np.array([[zoom, 0, (1 - zoom) * w / 2 + dx * w], [0, zoom, (1 - zoom) * h / 2 + dy * h]], np.float64)
    return np.stack([cv2.warpAffine(p, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for p in pixels])


def accuracy(model: EmotionModel, pixels: np.ndarray, labels: np.ndarray) -> float:
    size = model.crop_size
    crops = pixels if pixels.shape[1:] == (size[1], size[0]) else np.stack([resize(p, size) for p in pixels])
    probs = model.predict_in_batches(crops)
    return float((probs.argmax(1) == labels).mean())


PERTURBATIONS: list[tuple[str, dict[str, float]]] = [
    ("as is", {}),
    ("shift right 3 %", {"dx": 0.03}), ("shift right 6 %", {"dx": 0.06}), ("shift right 10 %", {"dx": 0.10}),
    ("shift down 3 %", {"dy": 0.03}), ("shift down 6 %", {"dy": 0.06}), ("shift down 10 %", {"dy": 0.10}),
    ("shift up 6 %", {"dy": -0.06}),
    ("zoom in 5 %", {"zoom": 1.05}), ("zoom in 10 %", {"zoom": 1.10}), ("zoom in 20 %", {"zoom": 1.20}),
    ("zoom out 5 %", {"zoom": 1 / 1.05}), ("zoom out 10 %", {"zoom": 1 / 1.10}), ("zoom out 20 %", {"zoom": 1 / 1.20}),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--eyes", type=int, default=600, help="Training crops to run the eye cascade on (0: skip)")
    ap.add_argument("--models", nargs="*", default=[], help="registered models for the re-crop experiment")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"error: FER2013 data not found at {args.data}", file=sys.stderr)
        return 2
    with np.load(args.data) as d:
        usage, pixels, labels = d["usage"], d["pixels"], d["label"].astype(np.int64)
    if args.eyes:
        idx = np.sort(np.random.default_rng(0).choice(np.flatnonzero(usage == 0), args.eyes, replace=False))
        e = eye_positions(pixels[idx])
        q = np.percentile(e, [25, 50, 75], axis=0)
        iod = np.hypot(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1])
        print(f"eye cascade: both eyes found in {len(e)}/{args.eyes} Training crops")
        for j, name in enumerate(("left eye x", "left eye y", "right eye x", "right eye y")):
            print(f"  {name:12s} median {q[1, j]:.3f}  (IQR {q[0, j]:.3f}-{q[2, j]:.3f})")
        print(f"  inter-ocular distance median {np.median(iod):.3f} (IQR {np.percentile(iod, 25):.3f}-"
              f"{np.percentile(iod, 75):.3f}) of the frame width; eye-line midpoint x "
              f"{np.median((e[:, 0] + e[:, 2]) / 2):.3f}, y {np.median((e[:, 1] + e[:, 3]) / 2):.3f}")
    test, test_labels = pixels[usage == 2], labels[usage == 2]
    models = [EmotionModel.load(ModelRegistry().get(m), providers=["CPUExecutionProvider"], intra_op_threads=2)
              for m in args.models]
    if models:
        rows: list[tuple[str, list[float]]] = []
        for name, kw in PERTURBATIONS:
            shifted = reframe(test, **kw) if kw else test
            rows.append((name, [accuracy(m, shifted, test_labels) for m in models]))
        print("\nPrivateTest accuracy under re-framing (%):")
        print(f"{'framing':18s}" + "".join(f"{m.key:>24s}" for m in models))
        base = rows[0][1]
        for name, accs in rows:
            print(f"{name:18s}" + "".join(f"{a * 100:16.2f} ({(a - b) * 100:+5.2f})" for a, b in zip(accs, base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

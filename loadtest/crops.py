"""Face crops for the load: FER2013 faces when the research data set is present, else synthetic.

FER2013 is read in place (../shared/data/fer2013/fer2013.npz or $AFFECTLINE_FER2013) and never
copied: a few hundred PrivateTest faces are resized to the server's crop size in memory. Without it,
face-like gray images are drawn in code (oval head, eyes, brows, mouth, shading, noise) so the
payload size, entropy and model work are the same as for real faces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FER_NPZ = Path(os.environ.get("AFFECTLINE_FER2013", REPO_ROOT.parent / "shared/data/fer2013/fer2013.npz"))
POOL_SIZE = 256
PRIVATE_TEST = 2


@dataclass(frozen=True)
class CropPool:
    crops: np.ndarray  # uint8 [N, size, size]
    source: str  # "fer2013" or "synthetic"

    def take(self, start: int, n: int) -> list[np.ndarray]:
        """n consecutive crops from index start (wrapping), like a viewer's successive frames."""
        return [self.crops[(start + i) % len(self.crops)] for i in range(n)]


_fer_faces: dict[int, np.ndarray] = {}


def _fer_private_test(n: int) -> np.ndarray:
    """The first n PrivateTest faces (48x48), read once per process."""
    if n not in _fer_faces:
        with np.load(FER_NPZ) as data:
            rows = np.flatnonzero(data["usage"] == PRIVATE_TEST)[:n]
            _fer_faces[n] = data["pixels"][rows]
    return _fer_faces[n]


def load_pool(size: int = 64, n: int = POOL_SIZE, seed: int = 0) -> CropPool:
    if FER_NPZ.is_file():
        faces = _fer_private_test(n)
        crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in faces])
        return CropPool(crops, "fer2013")
    return CropPool(synthetic_faces(n, size, seed), "synthetic")


def synthetic_faces(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Gray face-like crops: every image differs (pose jitter, expression, lighting, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size), dtype=np.uint8)
    for k in range(n):
        cx, cy = 0.5 + rng.normal(0, 0.03), 0.52 + rng.normal(0, 0.03)
        img = np.full((size, size), rng.uniform(40, 90), np.float32)  # background
        head = ((xx - cx) / 0.36) ** 2 + ((yy - cy) / 0.46) ** 2 < 1
        img[head] = rng.uniform(120, 190) + 40 * (xx[head] - cx)  # skin with side lighting
        for ex in (cx - 0.15, cx + 0.15):  # eyes and brows
            img[((xx - ex) / 0.07) ** 2 + ((yy - cy + 0.1) / 0.035) ** 2 < 1] = 35
            img[(np.abs(xx - ex) < 0.09) & (np.abs(yy - (cy - 0.19 + rng.normal(0, 0.015))) < 0.015)] = 50
        img[(np.abs(xx - cx) < 0.025) & (yy > cy - 0.05) & (yy < cy + 0.1)] -= 25  # nose shadow
        smile = rng.uniform(-0.08, 0.08)  # mouth curvature: frown .. smile
        mouth_y = cy + 0.24 + smile * ((xx - cx) / 0.15) ** 2
        img[(np.abs(xx - cx) < 0.15) & (np.abs(yy - mouth_y) < 0.02 + rng.uniform(0, 0.02))] = 45
        img += rng.normal(0, 6, img.shape)
        out[k] = np.clip(cv2.GaussianBlur(img, (3, 3), 0), 0, 255).astype(np.uint8)
    return out

"""The raw model ceiling: onnxruntime alone on pre-made tensors, no server, no crypto, no DB."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from affectline.inference.engine import EmotionModel


@dataclass(frozen=True)
class CeilingPoint:
    batch_size: int
    images_per_s: float  # median over repeats


def measure_ceiling(
    model: EmotionModel, batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64, 128), seconds: float = 1.0, repeats: int = 3
) -> list[CeilingPoint]:
    """Runs the model's own InferenceSession on float tensors already preprocessed."""
    options = ort.SessionOptions()
    session = ort.InferenceSession(str(model.onnx_path), options, providers=model.providers)  # the served variant
    name = session.get_inputs()[0].name
    w, h = model.crop_size
    rng = np.random.default_rng(0)
    points = []
    for bs in batch_sizes:
        x = rng.standard_normal((bs, 1, h, w)).astype(np.float32)
        session.run(None, {name: x})  # warm-up
        rates = []
        for _ in range(repeats):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                session.run(None, {name: x})
                n += bs
            rates.append(n / (time.perf_counter() - start))
        points.append(CeilingPoint(bs, statistics.median(rates)))
    return points

"""The raw model ceiling: onnxruntime alone on pre-made tensors, no server, no crypto, no DB."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from affectline.inference.engine import EmotionModel


@dataclass(frozen=True)
class CeilingPoint:
    batch_size: int
    images_per_s: float  # median over repeats
    layout: str = "1 session"  # how onnxruntime was run: sessions x intra-op threads
    sessions: int = 1  # measure_ceiling's `sessions`, to time the same layout again


def _session(model: EmotionModel, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per physical core)
    return ort.InferenceSession(str(model.onnx_path), options, providers=model.providers)  # the served variant


def measure_ceiling(
    model: EmotionModel,
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64, 128),
    seconds: float = 1.0,
    repeats: int = 3,
    sessions: int = 1,
) -> list[CeilingPoint]:
    """Runs the model's own file on float tensors already preprocessed.

    sessions=1: one InferenceSession with onnxruntime's default threading. sessions=N: N
    single-threaded sessions run side by side in N threads (onnxruntime releases the GIL),
    the layout the server's inference workers use; on small CPUs it can beat one session
    with N intra-op threads, and the ceiling must be the best onnxruntime alone can do.
    """
    runners = [_session(model, 0 if sessions == 1 else 1) for _ in range(sessions)]
    name = runners[0].get_inputs()[0].name
    w, h = model.crop_size
    rng = np.random.default_rng(0)
    layout = "1 session" if sessions == 1 else f"{sessions} sessions x 1 thread"
    points = []
    for bs in batch_sizes:
        x = rng.standard_normal((bs, 1, h, w)).astype(np.float32)
        for r in runners:
            r.run(None, {name: x})  # warm-up
        rates = []
        for _ in range(repeats):
            counts = [0] * sessions
            stop_at = time.perf_counter() + seconds

            def work(i: int) -> None:
                while time.perf_counter() < stop_at:
                    runners[i].run(None, {name: x})
                    counts[i] += bs

            start = time.perf_counter()
            threads = [threading.Thread(target=work, args=(i,)) for i in range(sessions)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rates.append(sum(counts) / (time.perf_counter() - start))
        points.append(CeilingPoint(bs, statistics.median(rates), layout, sessions))
    return points

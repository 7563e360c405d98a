"""fp16 and int8 variants of an exported model, measured and recorded in its manifest.

Writes next to MODEL_DIR/model.onnx:
  model.fp16.onnx  float16 weights and compute, float32 inputs/outputs (keep_io_types), so the
                   engine feeds it unchanged;
  model.int8.onnx  static QDQ quantisation (per-channel QInt8 weights, QUInt8 activations: signed
                   activations leave many convs in float), calibrated on 1,000 FER2013 Training crops.
                   Weights use reduce_range (7 bit): without it ORT's AVX2 u8s8 kernels saturate and
                   fer-mini-xception lost 4.3 points of PublicTest accuracy (65.5 -> 61.3 %); with it
                   it loses 0.1. Percentile calibration was chosen over MinMax on PublicTest. The output
                   Softmax (and a flip-averaged graph's logit mean) stays in float.
Then measures every variant (fp32 included) through affectline.inference.engine.EmotionModel:
PublicTest and PrivateTest accuracy, argmax agreement with fp32, and CPU throughput at batch 32
(median of several timed runs), and records them under the manifest's `variants` key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from affectline.face_crop import resize
from affectline.inference.engine import EmotionModel
from affectline.models.registry import ModelManifest, RegisteredModel
from affectline.training.data import DataNotFoundError
from affectline.training.flip_average import SOFTMAX_INPUT_NODES

log = logging.getLogger("affectline.training")
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
CALIBRATION_N, CALIBRATION_SEED = 1000, 0
BATCH, TIMED_RUNS, BATCHES_PER_RUN = 32, 9, 30


def to_model_size(pixels: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """48x48 FER2013 crops -> the model's crop size, resized exactly as the serving path does."""
    size = (manifest.input.width, manifest.input.height)
    if pixels.shape[1:] == (size[1], size[0]):
        return pixels
    return np.stack([resize(p, size) for p in pixels])


class CropReader(CalibrationDataReader):
    def __init__(self, crops: np.ndarray, manifest: ModelManifest, batch: int = 50) -> None:
        p = manifest.preprocessing
        x = (crops[:, None].astype(np.float32) * p.pixel_scale - p.mean) / p.std
        self._batches = iter([{manifest.input.name: x[i:i + batch].astype(np.float32)}
                              for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def build_fp16(src: Path, dst: Path) -> None:
    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def float_output_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes the quantizer must leave in float: an output Softmax (quantized, it gives probabilities
    in steps of 1/255: small confidences become 0 and p(happy) ties p(sad)) and the logit
    arithmetic of a flip-averaged graph in front of it (a few values per crop, no speed to gain)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node
            if (n.op_type == "Softmax" and outputs & set(n.output)) or n.name in SOFTMAX_INPUT_NODES]


def build_int8(src: Path, dst: Path, calib: np.ndarray, manifest: ModelManifest) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))  # shape inference + graph cleanup, as ORT recommends
        quantize_static(str(pre), str(dst), CropReader(calib, manifest), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile, reduce_range=True,
                        nodes_to_exclude=float_output_nodes(onnx.load(str(pre))))


def throughput(model: EmotionModel, crops: np.ndarray) -> float:
    batch = crops[:BATCH]
    for _ in range(5):
        model.predict(batch)
    rates = []
    for _ in range(TIMED_RUNS):
        t0 = time.perf_counter()
        for _ in range(BATCHES_PER_RUN):
            model.predict(batch)
        rates.append(BATCH * BATCHES_PER_RUN / (time.perf_counter() - t0))
    return statistics.median(rates)


def build_variants(model_dir: Path, data: Path, threads: int = 2) -> dict[str, Any]:
    """Builds and measures the variants of model_dir/model.onnx; returns the `variants` entry it
    writes into model_dir/manifest.json."""
    if not data.is_file():
        raise DataNotFoundError(f"FER2013 data not found at {data} (pass --data PATH to fer2013.npz)")
    man_path, src = model_dir / "manifest.json", model_dir / "model.onnx"
    manifest = ModelManifest.from_json(man_path)
    with np.load(data) as d:
        usage, pixels, labels = d["usage"], d["pixels"], d["label"].astype(np.int64)
        train_idx = np.flatnonzero(usage == 0)
        pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(train_idx, CALIBRATION_N, replace=False))
        calib = to_model_size(pixels[pick], manifest)
        evals = {split: (to_model_size(pixels[usage == code], manifest), labels[usage == code])
                 for split, code in (("fer2013_public_test", 1), ("fer2013_private_test", 2))}
    build_fp16(src, model_dir / VARIANT_FILES["fp16"])
    build_int8(src, model_dir / VARIANT_FILES["int8"], calib, manifest)

    # load each file through the engine exactly as serving would, variant chosen explicitly
    registered = RegisteredModel(dataclasses.replace(manifest, variants={n: {"file": f} for n, f in
                                                                         VARIANT_FILES.items()}), src)
    results: dict[str, Any] = {}
    fp32_pred: dict[str, np.ndarray] = {}
    for name, file in VARIANT_FILES.items():
        path = model_dir / file
        model = EmotionModel.load(registered, providers=["CPUExecutionProvider"], intra_op_threads=threads,
                                  variant=name)
        r: dict[str, Any] = {"file": file, "size_bytes": path.stat().st_size,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for split, (crops, y) in evals.items():
            pred = model.predict_in_batches(crops).argmax(1)
            fp32_pred.setdefault(split, pred)
            r[split] = round(float((pred == y).mean()), 4)
            r[f"{split}_argmax_agreement_with_fp32"] = round(float((pred == fp32_pred[split]).mean()), 4)
        r["cpu_img_per_s_batch32"] = round(throughput(model, evals["fer2013_private_test"][0]), 0)
        results[name] = r
        log.info("%-5s %-16s %6.2f MB  PublicTest %.2f %%  PrivateTest %.2f %%  agreement with fp32 %.2f %%  "
                 "%.0f img/s (batch %d)", name, file, r["size_bytes"] / 1e6, r["fer2013_public_test"] * 100,
                 r["fer2013_private_test"] * 100, r["fer2013_private_test_argmax_agreement_with_fp32"] * 100,
                 r["cpu_img_per_s_batch32"], BATCH)
    results["measured_with"] = (f"affectline.training.variants: EmotionModel.predict on uint8 crops "
                                f"(preprocessing included), onnxruntime CPUExecutionProvider, {threads} intra-op "
                                f"threads, batch {BATCH}, median of {TIMED_RUNS} runs x {BATCHES_PER_RUN} batches; "
                                f"{platform.processor() or platform.machine()}")
    results["int8_calibration"] = (f"{CALIBRATION_N} FER2013 Training crops (numpy default_rng({CALIBRATION_SEED})), "
                                   "QDQ, per-channel QInt8 weights (reduce_range: 7 bit), QUInt8 activations, "
                                   "percentile calibration, output Softmax in float")
    raw = json.loads(man_path.read_text())
    raw["variants"] = results
    man_path.write_text(json.dumps(raw, indent=2) + "\n")
    return results

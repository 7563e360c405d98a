"""Checkpoint -> ONNX model in the model registry, with a manifest of measured metrics.

The ONNX graph takes normalised crops [N,1,H,W] ("crops") and returns softmax(logits / T)
("probs"), the same contract as fer-mini-xception, so the inference engine serves it unchanged.
T is fitted on PublicTest; all reported test numbers are computed from the exported ONNX file.
`publish` adds what a shipped model has on top: flip averaging (training.flip_export) and the
fp16/int8 variants (training.variants), staged outside the registry until complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from affectline.training.calibrate import fit_temperature, softmax
from affectline.training.data import CLASS_NAMES, PIXEL_MEAN, PIXEL_STD, load_split
from affectline.training.flip_export import flip_average_model
from affectline.training.metrics import classification_report, manifest_accuracy, rounded_report
from affectline.training.model import count_params
from affectline.training.train import BEST, load_model, predict_logits
from affectline.training.variants import build_variants

log = logging.getLogger("affectline.training")
INPUT_NAME, OUTPUT_NAME = "crops", "probs"
CROP_SIZE = 48
OPSET = 17


class ServingModel(nn.Module):
    """Network + temperature-scaled softmax, the graph that gets exported."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature, dtype=torch.float32))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        z = self.net(crops)
        return torch.softmax(z * self.inv_temperature, dim=1)


def export_onnx(net: nn.Module, temperature: float, path: Path, size: int = CROP_SIZE) -> None:
    serving = ServingModel(net, temperature).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; dynamo=False is deliberate
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(serving, (torch.zeros(1, 1, size, size),), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}, do_constant_folding=True)


def onnx_probs(path: Path, pixels: np.ndarray, batch_size: int = 256, threads: int = 2) -> np.ndarray:
    """uint8 [N,H,W] crops -> probabilities from the ONNX file (manifest preprocessing applied)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name_in, name_out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    out = []
    for i in range(0, len(pixels), batch_size):
        x = ((pixels[i:i + batch_size, None].astype(np.float32) / 255.0 - PIXEL_MEAN) / PIXEL_STD).astype(np.float32)
        out.append(sess.run([name_out], {name_in: x})[0])
    return np.concatenate(out)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_data(cfg: dict[str, Any]) -> str:
    """What the targets were made of, from the run's own config (not a fixed text)."""
    w, ls = cfg["ferplus_weight"], cfg["label_smoothing"]
    targets = (f"{1 - w:g} x FER2013 label + {w:g} x FER+ vote distribution" if w > 0 else "FER2013 labels")
    mix = cfg.get("mixup_alpha", 0.0)
    mixed = f", mixup alpha {mix:g}" if mix > 0 else ""
    return (f"FER2013 Training split, targets: {targets}, label smoothing {ls:g}{mixed} "
            "(research/evaluation data, no open licence; see docs/model-card.md)")


def build_manifest(name: str, version: str, onnx_sha: str, cfg_dict: dict[str, Any], ckpt: dict[str, Any],
                   params: int, temperature: float, reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pub, priv = reports["public"], reports["private"]
    hist = ckpt.get("history", [])
    return {
        "name": name, "version": version, "format": "onnx",
        "input": {"name": INPUT_NAME, "width": CROP_SIZE, "height": CROP_SIZE, "channels": 1,
                  "layout": "NCHW", "dtype": "float32"},
        "preprocessing": {"resize": [CROP_SIZE, CROP_SIZE], "pixel_scale": 1 / 255, "mean": PIXEL_MEAN,
                          "std": PIXEL_STD},
        "output": {"name": OUTPUT_NAME, "kind": "probabilities"},
        "class_names": list(CLASS_NAMES),
        "provenance": {
            "source": "trained by Affectline: affectline train (server/affectline/training), see docs/training.md",
            "training_data": training_data(cfg_dict),
            "onnx_sha256": onnx_sha,
            "converter": f"torch.onnx.export(dynamo=False), opset {OPSET}, softmax(logits / T) baked in",
        },
        "licence": "Affectline internal; weights trained on FER2013 (research/evaluation use only, "
                   "see docs/model-card.md)",
        "attribution": "FER2013 (Goodfellow et al. 2013); FER+ votes (c) Microsoft Corporation, MIT",
        # the same keys `affectline evaluate --update-manifest` writes
        "accuracy": manifest_accuracy(
            pub, priv, "affectline.training.export (exported ONNX on the npz arrays, onnxruntime CPU fp32)", onnx_sha),
        # extra keys: ModelManifest.from_dict ignores them
        "calibration": {
            "method": "temperature scaling fitted on PublicTest (NLL)",
            "temperature": temperature,
            "ece_15_bins": {split: {"before": round(r["ece_uncalibrated"], 4), "after": round(r["ece"], 4)}
                            for split, r in (("fer2013_public_test", pub), ("fer2013_private_test", priv))},
            "nll": {split: {"before": round(r["nll_uncalibrated"], 4), "after": round(r["nll"], 4)}
                    for split, r in (("fer2013_public_test", pub), ("fer2013_private_test", priv))},
        },
        "metrics": {"fer2013_private_test": rounded_report(priv), "fer2013_public_test": rounded_report(pub)},
        "training": {
            "architecture": f"ExpressionVGG(width={cfg_dict['width']}): 4 stages x 2 conv3x3-BN-ReLU + maxpool, "
                            "GAP, dropout, linear (affectline.training.model)",
            "params": params,
            "data": "fer2013.npz: Training (train), PublicTest (checkpoint selection + temperature), "
                    "PrivateTest (report only)",
            "seed": cfg_dict["seed"],
            "epochs": cfg_dict["epochs"],
            "epochs_completed": len(hist),
            "selected_epoch": ckpt["epoch"] + 1,
            "train_wall_clock_s": round(sum(h["train_seconds"] for h in hist), 1),
            # a resumed run whose cosine schedule was re-planned (--resume --epochs N) says so
            "schedule_changes": ckpt.get("schedule_changes", []),
            "config": cfg_dict,
        },
    }


def export_run(run_dir: Path, data: Path, models_root: Path, name: str, version: str,
               checkpoint: str = BEST) -> dict[str, Any]:
    """Export run_dir/checkpoint to models_root/name/version/{model.onnx,manifest.json} (the
    plain graph: no flip averaging, no variants; `publish` adds those)."""
    net, cfg, ckpt = load_model(run_dir / checkpoint)
    last = run_dir / "last.pt"
    if last.is_file():  # history (epochs, wall-clock) and schedule changes live in last.pt
        latest = torch.load(last, weights_only=False)
        ckpt = {**ckpt, "history": latest["history"], "schedule_changes": latest.get("schedule_changes", [])}
    splits = {s: load_split(data, s) for s in ("public", "private")}
    logits = {s: predict_logits(net, sp.pixels) for s, sp in splits.items()}
    temperature = fit_temperature(logits["public"], splits["public"].labels)
    out_dir = models_root / name / version
    onnx_path = out_dir / "model.onnx"
    export_onnx(net, temperature, onnx_path)
    reports: dict[str, dict[str, Any]] = {}
    for s, sp in splits.items():
        probs = onnx_probs(onnx_path, sp.pixels)
        diff = float(np.abs(probs - softmax(logits[s], temperature)).max())
        if diff > 1e-4:
            raise RuntimeError(f"ONNX and torch disagree on {s}: max abs diff {diff:.2e}")
        r = classification_report(probs, sp.labels)
        raw = classification_report(softmax(logits[s]), sp.labels)
        r.update(ece_uncalibrated=raw["ece"], nll_uncalibrated=raw["nll"], onnx_vs_torch_max_abs_diff=diff)
        reports[s] = r
    manifest = build_manifest(name, version, sha256(onnx_path), ckpt["config"], ckpt, count_params(net),
                              temperature, reports)
    manifest["training"]["test_time_flip_averaging"] = False  # training.flip_export sets it
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("exported %s (%.2f MB), T=%.3f, PublicTest acc %.4f, PrivateTest acc %.4f, ECE %.4f -> %.4f",
             onnx_path, onnx_path.stat().st_size / 1e6, temperature, reports["public"]["accuracy"],
             reports["private"]["accuracy"], reports["private"]["ece_uncalibrated"], reports["private"]["ece"])
    return manifest


def publish(run_dir: Path, data: Path, models_root: Path, name: str, version: str, *, flip_average: bool,
            variants: bool) -> dict[str, Any]:
    """Export the run's best checkpoint as models_root/name/version, flip-averaged (temperature
    re-fitted on PublicTest) and with its measured fp16/int8 variants where asked. Everything is
    built in a scratch directory first: a failure leaves the registry as it was."""
    with tempfile.TemporaryDirectory(prefix="affectline-export-") as tmp:
        plain = Path(tmp) / "plain"
        manifest = export_run(run_dir, data, plain, name, version)
        staged = plain / name / version
        if flip_average:
            staged = Path(tmp) / "flip"
            splits = {s: load_split(data, s) for s in ("public", "private")}
            manifest = flip_average_model(plain / name / version, staged, splits)
        if variants:
            manifest["variants"] = build_variants(staged, data)
        out_dir = models_root / name / version
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, out_dir)
    log.info("published %s/%s in %s", name, version, out_dir)
    return manifest

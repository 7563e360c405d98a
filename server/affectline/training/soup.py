"""Weight soups: one network whose weights are the element-wise mean of several runs' weights.

The ingredients are runs that start from the same weights (e.g. `affectline train --init-from`)
and differ in their seed, so in the augmentation, mixup and order they saw. Runs from a shared
start stay in one basin of the loss, where the mean of their weights is itself a good network,
often a better one than each ingredient (Wortsman et al. 2022, "Model soups"), at the cost of
one network: serving does not change.

Averaging weights moves each layer's activation statistics, so the BatchNorm running statistics
of the mean are not the mean of the ingredients' statistics; they are recomputed over training
images afterwards (as `torch.optim.swa_utils.update_bn` does for SWA), unless asked not to.
Session 24 (docs/training.md) measured both on one soup: recomputing over un-augmented crops cost
0.75 points of PublicTest accuracy against averaged statistics, since the network was trained on
augmented, mixed-up batches whose statistics differ from clean crops'.

The soup is written as RUN_DIR/best.pt, so `affectline train --run-dir RUN_DIR --export-only`
exports it like any run; its "soup" entry (ingredients and their checkpoints' sha256) goes into
the manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from affectline.training.config import TrainConfig
from affectline.training.train import BEST, LAST, build_model, to_input


class SoupError(ValueError):
    """The ingredients cannot be averaged (unfinished runs, different networks)."""


def mean_state(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts with the same keys and shapes. Float tensors are averaged
    (in float64, then cast back); integer ones (BatchNorm's num_batches_tracked) are taken from
    the first state, since a count has no meaningful mean."""
    if not states:
        raise SoupError("a soup needs at least one ingredient")
    keys = list(states[0])
    for i, s in enumerate(states[1:], 2):
        if list(s) != keys:
            raise SoupError(f"ingredient {i} has other parameters than ingredient 1")
        for k in keys:
            if s[k].shape != states[0][k].shape:
                raise SoupError(f"ingredient {i}: {k} has shape {tuple(s[k].shape)}, "
                                f"ingredient 1 {tuple(states[0][k].shape)}")
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            out[k] = torch.stack([s[k].double() for s in states]).mean(0).to(first.dtype)
        else:
            out[k] = first.clone()
    return out


@torch.no_grad()
def recompute_batchnorm(net: nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> int:
    """Replaces every BatchNorm's running mean and variance by their averages over the batches of
    `inputs` (normalised crops [N,1,H,W]) as the network in training mode sees them; returns the
    number of BatchNorm layers. The network is left in eval mode; its weights do not change."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches, not an exponential one
    device = next(net.parameters()).device
    net.train()
    try:
        for i in range(0, len(inputs), batch_size):
            net(inputs[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        net.eval()
    return len(bns)


def ingredient(run_dir: Path) -> tuple[dict[str, torch.Tensor], TrainConfig, dict[str, Any]]:
    """A finished run's final weights: its weight average (EMA) when it keeps one, else its raw
    weights, from RUN_DIR/last.pt; with its config and a description for the manifest."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise SoupError(f"{run_dir}: no {LAST} (not a training run, or not started)")
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    cfg = TrainConfig.from_dict(ckpt["config"])
    if ckpt["epoch"] + 1 != cfg.epochs:
        raise SoupError(f"{run_dir}: stopped after epoch {ckpt['epoch'] + 1} of {cfg.epochs}; "
                        "finish it first (affectline train --resume)")
    kind = "ema" if "ema" in ckpt else "model"
    about = {"run_dir": str(run_dir), "seed": cfg.seed, "epochs": cfg.epochs, "weights": kind,
             "init_from": cfg.init_from, "last_pt_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return ckpt[kind], cfg, about


def build_soup(run_dirs: Sequence[Path], out_dir: Path, train_pixels: np.ndarray,
               batch_size: int = 512, recompute_bn: bool = True) -> dict[str, Any]:
    """Averages the finished runs' final weights, recomputes BatchNorm statistics over
    `train_pixels` (uint8 training crops [N,H,W]) unless recompute_bn is False (then they are
    the mean of the ingredients' statistics, like every other tensor), writes OUT_DIR/best.pt
    and returns it."""
    parts = [ingredient(Path(d)) for d in run_dirs]
    cfgs = [c for _, c, _ in parts]
    if len({c.width for c in cfgs}) != 1:
        raise SoupError(f"ingredients of different widths {sorted({c.width for c in cfgs})} cannot be averaged")
    # without --init-from a run starts from random weights drawn from its seed
    starts = {c.init_from or f"random weights of seed {c.seed}" for c in cfgs}
    if len(starts) != 1:
        raise SoupError(f"ingredients start from different weights ({', '.join(sorted(starts))}): "
                        "a soup needs one start")
    net = build_model(cfgs[0])
    net.load_state_dict(mean_state([s for s, _, _ in parts]))
    if recompute_bn:
        n_bn = recompute_batchnorm(net, to_input(train_pixels), batch_size)
        bn_note = f"running statistics of {n_bn} layers recomputed over {len(train_pixels)} un-augmented training images"
    else:
        bn_note = "running statistics averaged with the weights (not recomputed)"
    cfg = TrainConfig.from_dict({**asdict(cfgs[0]), "out_dir": str(out_dir)})
    soup = {"ingredients": [a for _, _, a in parts], "method": "uniform mean of the ingredients' final weights",
            "batchnorm": bn_note}
    ckpt = {"config": asdict(cfg), "epoch": cfg.epochs - 1, "model": net.state_dict(), "soup": soup}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, Path(out_dir) / BEST)
    return ckpt

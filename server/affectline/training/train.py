"""The training loop: reproducible from a seed, checkpointed every epoch, resumable.

Reproducibility: every epoch re-seeds torch's global RNG (dropout) and a private Generator
(shuffling, augmentation) from (seed, epoch), and the learning rate is a pure function of the
step. A run resumed from `last.pt` therefore continues exactly as if it had never stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from affectline.inference.variant_probe import describe, fastest, time_variants
from affectline.training.augment import augment
from affectline.training.config import DEVICES, PRECISIONS, TrainConfig
from affectline.training.data import Split, load_split, normalise, soft_targets
from affectline.training.metrics import happy_vs_sad
from affectline.training.model import ExpressionVGG, count_params

log = logging.getLogger("affectline.training")
LAST, BEST = "last.pt", "best.pt"


def build_model(cfg: TrainConfig) -> ExpressionVGG:
    return ExpressionVGG(width=cfg.width, dropout=cfg.dropout)


def resolve_device(device: str) -> torch.device:
    """"auto" -> the first CUDA GPU where torch sees one, else the CPU. "cuda" without a usable
    GPU is an error (ValueError), not a silent fall-back to a run 100x slower."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: this torch ({torch.__version__}) sees no CUDA GPU")
    return torch.device(device)


# "auto" trains under bf16 only where a step is measured this much faster than in fp32: near-ties
# keep fp32, the exact path, so timing noise on a machine where both run alike does not change the
# choice (and so the weights) from one start to the next.
BF16_MARGIN = 0.10


def native_bf16(device: torch.device = torch.device("cpu")) -> bool:
    """Whether the device computes bf16 natively (AVX512-BF16/AMX on a CPU, compute capability
    8.0+ on a GPU); emulated bf16 was 13x slower than fp32 on an AVX2-only CPU."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def step_rates(width: int, batch_size: int, device: torch.device = torch.device("cpu"),
               rounds: int = 3) -> dict[str, float]:
    """Images/s of one training step (train_step) of ExpressionVGG(width) on a batch of random
    48x48 inputs, in fp32 and under bf16 autocast: a throwaway model, two untimed steps each, then
    `rounds` interleaved timed steps each, the median. Draws from torch's global RNG."""
    model = ExpressionVGG(width=width).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 1, 48, 48).to(device).contiguous(memory_format=torch.channels_last)
    targets = F.one_hot(torch.randint(0, 7, (batch_size,)), 7).float().to(device)

    def step(bf16: bool) -> Callable[[torch.Tensor], float]:
        return lambda batch: train_step(model, opt, batch, targets, bf16)

    runs = {"fp32": step(False), "bf16": step(True)}
    for run in runs.values():  # time_variants warms up once more: oneDNN builds its kernels on first use
        run(x)
    return time_variants(runs, x, rounds=rounds)


def choose_bf16(precision: str, device: torch.device = torch.device("cpu"), *,
                rates: Callable[[], dict[str, float]]) -> tuple[bool, str]:
    """Whether the run trains under bf16 autocast, and why (for the log). "bf16"/"fp32" are taken
    as asked. "auto": fp32 where the device has no native bf16; on a GPU with it, bf16; on a CPU
    with it, whichever `rates()` (called only then, e.g. step_rates of the run's network) times
    faster here, fp32 unless bf16 wins by more than BF16_MARGIN. Native bf16 is not enough on a CPU: on an Intel
    Xeon with AVX512-BF16 but no AMX a width-48 step ran 103-105 img/s in bf16 against 133-145 in
    fp32, where AMD EPYCs with AVX512-BF16 ran it 2.3-2.5x and a Xeon with AMX 2.9x faster in bf16
    (docs/training.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision == "bf16", "as asked"
    if not native_bf16(device):
        return False, f"auto: no native bf16 on this {device.type.upper()}"
    if device.type == "cuda":
        return True, "auto: native bf16 on this GPU"
    measured = rates()
    bf16 = fastest(measured, preferred="fp32", margin=BF16_MARGIN) == "bf16"
    return bf16, f"auto: one training step timed here, img/s {describe(measured)}"


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, targets: torch.Tensor,
               bf16: bool) -> float:
    """One SGD step on soft targets [N,C]; the forward pass under bf16 autocast if asked, the
    loss in fp32. Returns the batch's mean loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = -(targets * F.log_softmax(logits.float(), 1)).sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blends the batch with a shuffled copy of itself: lam * a + (1 - lam) * b for the images
    and the soft targets alike, lam ~ Beta(alpha, alpha) once per batch."""
    lam = float(rng.beta(alpha, alpha))
    pair = torch.from_numpy(rng.permutation(len(x)))
    return lam * x + (1 - lam) * x[pair], lam * targets + (1 - lam) * targets[pair]


def ema_decay_at(step: int, decay: float) -> float:
    """The average's decay at a step: ramps up as (1 + step) / (10 + step) so that the first
    steps' random weights do not linger in it, capped at `decay`."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for every float tensor of the state (weights and
    BatchNorm statistics); integer buffers (BN's batch counter) are copied."""
    src = model.state_dict()
    for name, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            v.mul_(decay).add_(src[name].detach(), alpha=1 - decay)
        else:
            v.copy_(src[name])


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W] -> normalised float [N,1,H,W] (the same transform the ONNX manifest declares)."""
    return normalise(torch.from_numpy(pixels).float().unsqueeze(1) / 255.0)  # type: ignore[return-value]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, pixels: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits for uint8 crops, computed on the model's device, returned on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(pixels), batch_size):
        x = to_input(pixels[i:i + batch_size]).to(device)
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out).numpy()


def mirrored(pixels: np.ndarray) -> np.ndarray:
    """Crops [N,H,W] flipped left to right (contiguous, ready for the network)."""
    return np.ascontiguousarray(pixels[:, :, ::-1])


def flip_averaged_logits(model: torch.nn.Module, pixels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The mean of the model's logits on each crop (`logits`, already computed) and on its mirror
    image: what the flip-averaged ONNX graph computes before its softmax."""
    return (logits + predict_logits(model, mirrored(pixels))) / 2


def selection_score(entry: dict[str, float], cfg: TrainConfig, ema: bool) -> float | None:
    """An epoch's PublicTest accuracy as the selection sees it (raw or weight average, plain or
    flip-averaged), or None when the epoch may not be selected (happy-vs-sad under the floor)."""
    key = ("ema_public_" if ema else "public_") + ("flip_" if cfg.select_flip else "")
    if entry[key + "happy_vs_sad"] < cfg.min_happy_vs_sad:
        return None
    return entry[key + "acc"]


def setup_logging(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    target = str((out_dir / "train.log").resolve())
    if not any(getattr(h, "baseFilename", None) == target for h in log.handlers):
        for h in list(log.handlers):  # a new run directory in the same process (tests)
            log.removeHandler(h)
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        fmt.converter = time.gmtime
        for h in (logging.FileHandler(target), logging.StreamHandler()):
            h.setFormatter(fmt)
            log.addHandler(h)
        log.propagate = False


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write then rename: a kill mid-save never leaves a corrupt checkpoint behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int = 0, epochs: int = 0,
          device: str = "cpu") -> dict[str, Any]:
    """Train (or continue) the run in cfg.out_dir; returns the latest checkpoint dict.

    The run ends after epoch cfg.train_epochs (when set) or at the end of the schedule.
    stop_after > 0 runs at most that many epochs in this call (continue later with resume=True).
    epochs > 0 with resume changes the schedule length of the resumed run (the cosine then ends
    at the new total); the change is logged and kept in the checkpoint's `schedule_changes`.
    device ("cpu", "cuda", "auto") is where the network and its steps run; shuffling,
    augmentation and mixup stay on the CPU with the same seeded streams, so a GPU run sees the
    same batches as a CPU run, but its float results are not bit-identical to one. It is not part
    of the config: a run may be resumed elsewhere. Each epoch's history entry records it.
    """
    dev = resolve_device(device)
    out = Path(cfg.out_dir)
    setup_logging(out)
    torch.set_num_threads(cfg.threads)
    start_epoch, history, best_acc = 0, [], -1.0
    schedule_changes: list[dict[str, int]] = []
    ckpt: dict[str, Any] = {}
    if resume and (out / LAST).is_file():
        ckpt = torch.load(out / LAST, weights_only=False, map_location="cpu")
        if ckpt["config"] != asdict(cfg):
            log.info("resume: using the checkpoint's config %s (ignoring the given one)", ckpt["config"])
            cfg = TrainConfig.from_dict(ckpt["config"])
    if "bf16" in ckpt:  # a resumed run keeps the precision it started with
        bf16, why = ckpt["bf16"], "as the run started"
    else:  # before the run's own seeding: the timing draws from torch's global RNG
        bf16, why = choose_bf16(cfg.precision, dev, rates=lambda: step_rates(cfg.width, cfg.batch_size, dev))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    # a shadow copy for the weight average; None when the run does not keep one
    ema = copy.deepcopy(model) if cfg.ema_decay > 0 else None
    if ckpt:
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, history, best_acc = ckpt["epoch"] + 1, ckpt["history"], ckpt["best_public_acc"]
        schedule_changes = ckpt.get("schedule_changes", [])
        log.info("resumed from %s after epoch %d", out / LAST, ckpt["epoch"] + 1)
        if epochs > 0 and epochs != cfg.epochs:
            log.info("resume: schedule length changed from %d to %d epochs from epoch %d on",
                     cfg.epochs, epochs, start_epoch + 1)
            schedule_changes.append({"from_epoch": start_epoch + 1, "old_epochs": cfg.epochs, "new_epochs": epochs})
            cfg = TrainConfig.from_dict({**asdict(cfg), "epochs": epochs})
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    tr = load_split(Path(cfg.data), "train").first(cfg.train_limit)
    pub = load_split(Path(cfg.data), "public").first(cfg.eval_limit)
    targets = torch.from_numpy(soft_targets(tr, cfg.ferplus_weight, cfg.label_smoothing))
    pixels01 = torch.from_numpy(tr.pixels).float().unsqueeze(1) / 255.0
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    log.info("model ExpressionVGG(width=%d): %d params; %d training images, %d PublicTest; %d epochs x %d steps%s; "
             "%s (%s) on %s%s%s%s",
             cfg.width, count_params(model), len(tr), len(pub), cfg.epochs, steps_per_epoch,
             f", ending after epoch {cfg.final_epoch}" if cfg.final_epoch < cfg.epochs else "",
             "bf16 autocast" if bf16 else "fp32", why, _describe(dev),
             f"; mixup alpha {cfg.mixup_alpha}" if cfg.mixup_alpha > 0 else "",
             f"; weight average (EMA) decay {cfg.ema_decay}, selected and exported" if ema is not None else "",
             _describe_selection(cfg))

    ckpt = {}
    end_epoch = cfg.final_epoch if stop_after <= 0 else min(cfg.final_epoch, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # order + augmentation
        perm = torch.randperm(len(tr), generator=g)
        # mixup draws from its own stream, so runs without it keep their exact sequence of batches
        mix_rng = np.random.default_rng([cfg.seed, epoch, 1]) if cfg.mixup_alpha > 0 else None
        model.train()
        t0, loss_sum = time.perf_counter(), 0.0
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, cfg.lr)
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x, y = augment(pixels01[idx], g), targets[idx]
            if mix_rng is not None:
                x, y = mixup(x, y, cfg.mixup_alpha, mix_rng)
            x = normalise(x).to(dev).contiguous(memory_format=torch.channels_last)  # type: ignore[attr-defined]
            y = y.to(dev)
            loss_sum += train_step(model, opt, x, y, bf16) * len(idx)
            if ema is not None:
                ema_update(ema, model, ema_decay_at(step, cfg.ema_decay))
        train_s = time.perf_counter() - t0
        selected = ema if ema is not None else model  # the weights that are selected and exported
        logits = predict_logits(model, pub.pixels)
        entry = {"epoch": epoch + 1, "train_loss": loss_sum / len(tr), **public_metrics(logits, pub, "public_")}
        if ema is not None:
            logits = predict_logits(ema, pub.pixels)
            entry.update(public_metrics(logits, pub, "ema_public_"))
        if cfg.select_flip:
            entry.update(public_metrics(flip_averaged_logits(selected, pub.pixels, logits), pub,
                                        "ema_public_flip_" if ema is not None else "public_flip_"))
        entry.update({"train_seconds": train_s, "img_per_s": len(tr) / train_s, "device": dev.type,
                      "precision": "bf16" if bf16 else "fp32"})
        history.append(entry)
        score = selection_score(entry, cfg, ema is not None)
        acc = -1.0 if score is None else score
        improved = acc > best_acc
        best_acc = max(best_acc, acc)
        ckpt = {"config": asdict(cfg), "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "history": history, "best_public_acc": best_acc, "schedule_changes": schedule_changes, "bf16": bf16}
        if ema is not None:
            ckpt["ema"] = ema.state_dict()
        _save_atomic(ckpt, out / LAST)
        if improved:
            _save_atomic({"config": asdict(cfg), "epoch": epoch, "model": selected.state_dict(), "public_acc": acc},
                         out / BEST)
        flip = "ema_public_flip_" if ema is not None else "public_flip_"
        log.info("epoch %d/%d loss %.4f PublicTest acc %.4f nll %.4f happy-vs-sad %.4f%s%s%s | %.0f s, %.0f img/s, "
                 "lr %.4f",
                 epoch + 1, cfg.epochs, loss_sum / len(tr), entry["public_acc"], entry["public_nll"],
                 entry["public_happy_vs_sad"],
                 "" if ema is None else " | EMA acc %.4f nll %.4f happy-vs-sad %.4f" % (
                     entry["ema_public_acc"], entry["ema_public_nll"], entry["ema_public_happy_vs_sad"]),
                 "" if not cfg.select_flip else " | flip-averaged acc %.4f happy-vs-sad %.4f" % (
                     entry[flip + "acc"], entry[flip + "happy_vs_sad"]),
                 " (best)" if improved else "", train_s, len(tr) / train_s, opt.param_groups[0]["lr"])
    if not ckpt:
        ckpt = torch.load(out / LAST, weights_only=False, map_location="cpu")
    if best_acc < 0:
        log.info("%s: no epoch reached PublicTest happy-vs-sad %.4f, so none is selected (no %s)",
                 "done" if end_epoch == cfg.final_epoch else "stopped", cfg.min_happy_vs_sad, BEST)
    else:
        log.info("%s: best PublicTest acc %.4f", "done" if end_epoch == cfg.final_epoch else "stopped", best_acc)
    return ckpt


def _describe_selection(cfg: TrainConfig) -> str:
    if not cfg.select_flip and cfg.min_happy_vs_sad <= 0:
        return ""
    what = "flip-averaged " if cfg.select_flip else ""
    floor = f" among epochs with {what}PublicTest happy-vs-sad >= {cfg.min_happy_vs_sad}" \
        if cfg.min_happy_vs_sad > 0 else ""
    return f"; selection: best {what}PublicTest accuracy{floor}"


def _describe(dev: torch.device) -> str:
    return f"GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "CPU"


def public_metrics(logits: np.ndarray, pub: Split, prefix: str) -> dict[str, float]:
    """Accuracy, NLL and happy-vs-sad of PublicTest logits."""
    return {prefix + "acc": float((logits.argmax(1) == pub.labels).mean()),
            prefix + "nll": float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(pub.labels))),
            prefix + "happy_vs_sad": happy_vs_sad(logits, pub.labels)}


def load_model(path: Path) -> tuple[ExpressionVGG, TrainConfig, dict[str, Any]]:
    """A checkpoint (best.pt or last.pt) -> eval-mode model, its config, the raw checkpoint."""
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, ckpt

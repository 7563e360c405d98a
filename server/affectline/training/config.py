"""The training run's settings, torch-free so that the CLI can show their defaults without torch."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("cpu", "cuda", "auto")


@dataclass
class TrainConfig:
    data: str
    out_dir: str
    seed: int = 0
    epochs: int = 28  # length of the cosine schedule
    # > 0: the run ends after this epoch of the schedule (the learning rate follows the full
    # `epochs` schedule up to there); affectline-vgg/6 ran 60 of 80. 0: the whole schedule.
    train_epochs: int = 0
    width: int = 32
    dropout: float = 0.3
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    ferplus_weight: float = 0.0  # FER+ votes pulled fear/disgust towards neutral (affectline-vgg/1, retired)
    label_smoothing: float = 0.1
    # > 0: mixup (Zhang et al. 2018): each batch is blended with a shuffled copy of itself by
    # lam ~ Beta(alpha, alpha), images and soft targets alike. 0 (default) leaves runs as before.
    mixup_alpha: float = 0.0
    # > 0: also keeps an exponential moving average of the weights (decay per step, warmed up by
    # train.ema_decay_at); the average, not the raw weights, is evaluated, selected and exported.
    # The raw weights' trajectory is unchanged by it. 0 (default) leaves runs as before.
    ema_decay: float = 0.0
    # Selection (which epoch becomes best.pt). select_flip: judge the selected weights by their
    # flip-averaged PublicTest logits (mean over the image and its mirror, what a graph built by
    # training.flip_export serves). min_happy_vs_sad > 0: only epochs whose PublicTest
    # happy-vs-sad (flip-averaged with select_flip) reaches it may be selected; the best accuracy among
    # them wins, and a run where none does has no best.pt. False / 0 (default) leave runs as before.
    select_flip: bool = False
    min_happy_vs_sad: float = 0.0
    # auto: bf16 autocast where the device has native bf16 and (on a CPU) a training step is timed
    # faster in it at the start of the run (2.3-2.9x on AVX512-BF16 EPYCs and an AMX Xeon, 0.75x on a
    # Xeon with AVX512-BF16 but no AMX), else fp32 (emulated bf16 was 13x slower on an AVX2-only CPU)
    precision: str = "auto"
    threads: int = 2
    train_limit: int = 0  # >0: use only the first N training images (smoke tests)
    eval_limit: int = 0  # >0: use only the first N PublicTest images (smoke tests)

    @property
    def final_epoch(self) -> int:
        """The last epoch the run trains (1-based)."""
        return min(self.train_epochs, self.epochs) if self.train_epochs > 0 else self.epochs

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Unknown keys are ignored; checkpoints from before `precision` existed trained in fp32."""
        names = {f.name for f in fields(cls)}
        return cls(**{"precision": "fp32", **{k: v for k, v in d.items() if k in names}})

    @classmethod
    def default(cls, name: str) -> Any:
        return next(f.default for f in fields(cls) if f.name == name)

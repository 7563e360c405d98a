"""Training-step speed of ExpressionVGG on this CPU: images/s per width and precision.

    .venv/bin/python scripts/train_speed_probe.py [--widths 32,40] [--precisions fp32,bf16]

One SGD step on random 48x48 inputs, batch 128, channels_last, median of the timed steps.
Needs the `train` extra (torch). No data is read. See docs/training.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from affectline.training.model import ExpressionVGG, count_params
from affectline.training.train import train_step, uses_bf16


def step_rate(width: int, bf16: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = ExpressionVGG(width=width).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    targets = F.one_hot(torch.randint(0, 7, (batch,)), 7).float()
    times = []
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        train_step(model, opt, x, targets, bf16)  # the training loop's own step
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="32", help="comma-separated widths (default: %(default)s)")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="(default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=128, help="(default: %(default)s)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting (default: %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"native bf16 on this CPU: {uses_bf16('auto')} (what --precision auto would pick)")
    for width in (int(w) for w in args.widths.split(",")):
        params = count_params(ExpressionVGG(width=width))
        for precision in args.precisions.split(","):
            rate = step_rate(width, uses_bf16(precision), args.batch_size, args.steps)
            print(f"width {width:>3} ({params / 1e6:.2f} M params) {precision:>4}: {rate:,.0f} img/s", flush=True)


if __name__ == "__main__":
    main()

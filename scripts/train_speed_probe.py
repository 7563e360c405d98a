"""Training-step speed of ExpressionVGG on this CPU: images/s per width in fp32 and bf16 autocast,
and the precision `affectline train --precision auto` would pick here.

    .venv/bin/python scripts/train_speed_probe.py [--widths 32,40] [--steps 10]

One SGD step on random 48x48 inputs, batch 128, channels_last: two untimed steps per precision,
then --steps interleaved timed steps each, the median (the timing `--precision auto` runs at the
start of a training run, with more steps). Needs the `train` extra (torch). No data is read.
See docs/training.md.
"""

from __future__ import annotations

import argparse

import torch

from affectline.training.model import ExpressionVGG, count_params
from affectline.training.train import choose_bf16, native_bf16, step_rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="32", help="comma-separated widths (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="(default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=128, help="(default: %(default)s)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per precision (default: %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"native bf16 on this CPU: {native_bf16()}")
    for width in (int(w) for w in args.widths.split(",")):
        params = count_params(ExpressionVGG(width=width))
        rates = step_rates(width, args.batch_size, rounds=args.steps)
        for precision, rate in rates.items():
            print(f"width {width:>3} ({params / 1e6:.2f} M params) {precision:>4}: {rate:,.0f} img/s", flush=True)
        bf16, _ = choose_bf16("auto", rates=lambda: rates)
        print(f"width {width:>3}: --precision auto would train in {'bf16' if bf16 else 'fp32'} here", flush=True)


if __name__ == "__main__":
    main()

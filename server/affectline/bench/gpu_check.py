"""GPU check: the raw model ceiling on each GPU provider and the serving benchmark, as one report.

    python -m affectline.bench.gpu_check [--out gpu-report.md] [--providers cuda,tensorrt]

For the day a GPU host is available (the `gpu` image, or onnxruntime-gpu installed in place of
onnxruntime). Steps: (1) check that every requested onnxruntime provider is present and really
starts a session here; else stop at once with one line naming it (exit 2); (2) the raw ceiling
(bench/ceiling.py) of the model's provider-specific variant on each provider (TensorRT: int8,
CUDA: fp16, as the server picks them); (3) `affectline serve` on this host (it picks TensorRT >
CUDA > CPU by itself; the report names what it used) under a saturating load and a paced 30-fps
load (bench/__main__.py's served/run_load); (4) frames stored vs acked. The markdown report goes
to --out and stdout. Exit 0 when every acked frame was stored and no call failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import onnxruntime as ort

from affectline.bench.ceiling import CeilingPoint, measure_ceiling
from affectline.config import Settings

PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
CPU = "CPUExecutionProvider"
# GPUs need large batches to fill; the CPU benchmark's list stops at 128.
BATCH_SIZES = (1, 8, 32, 64, 128, 256, 512)


class ProviderMissing(Exception):
    """A requested provider is absent or cannot start here; str() is the one-line reason."""


def check_available(names: list[str], available: list[str] | None = None) -> None:
    """Raises ProviderMissing for the first requested provider onnxruntime does not list."""
    available = ort.get_available_providers() if available is None else available
    for name in names:
        provider = PROVIDERS[name]
        if provider not in available:
            raise ProviderMissing(
                f"{provider} is not available in this onnxruntime {ort.__version__} (available: "
                f"{', '.join(available)}); run on an NVIDIA GPU host with onnxruntime-gpu (the `gpu` image)")


def load_on(provider: str, model_key: str):
    """The model on `provider` (CPU fallback for ops it lacks), in the variant the server would pick.
    onnxruntime-gpu lists its GPU providers even where no GPU or library is present and then
    falls back to the CPU quietly; that fallback is a ProviderMissing here."""
    from affectline.inference.engine import EmotionModel
    from affectline.models.registry import ModelRegistry

    model = EmotionModel.load(ModelRegistry().get(model_key), providers=list(dict.fromkeys([provider, CPU])),
                               variant="auto")
    if provider not in model.providers:
        raise ProviderMissing(
            f"{provider} is listed by onnxruntime but did not start (no GPU visible, or CUDA/cuDNN/"
            f"TensorRT libraries missing; see onnxruntime's log above); the session runs on "
            f"{', '.join(model.providers)}")
    return model


def gpu_description() -> str:
    if not shutil.which("nvidia-smi"):
        return "unknown (no nvidia-smi)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown (nvidia-smi failed: {exc})"
    return "; ".join(line.strip() for line in out.splitlines() if line.strip()) or "none listed"


def server_providers(log_text: str) -> str:
    """The providers `affectline serve` logged at start-up ("... model M (V) on P1,P2)")."""
    found = re.findall(r" on ((?:\w+ExecutionProvider,?)+)\)", log_text)
    return found[-1] if found else "unknown (see the server log)"


def ceiling_table(rows: list[tuple[str, str, CeilingPoint]]) -> list[str]:
    lines = ["| provider | variant | batch | images/s |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {p} | {v} | {pt.batch_size} | {pt.images_per_s:,.0f} |" for p, v, pt in rows]
    return lines


def serving_row(name: str, sessions: int, r) -> str:
    from affectline.bench.__main__ import percentile, within_slo

    ms = [percentile(r.latencies_s, q) * 1000 for q in (50, 95, 99)]
    slo = "yes" if within_slo(r) else "no"
    return (f"| {name} | {sessions} | {r.steady_fps:,.0f} | {ms[0]:.1f} / {ms[1]:.1f} / {ms[2]:.1f} | "
            f"{r.frames_acked}/{r.frames_sent} | {sum(r.errors.values())} | {slo} |")


def run_serving(args: argparse.Namespace, data_dir: Path) -> tuple[list[str], bool]:
    from affectline.bench.__main__ import count_stored, load_faces, run_load, served
    from affectline.bench.sessions import LoadResult, LoadSpec
    from affectline.models.registry import ModelRegistry

    side = ModelRegistry().get(args.model).manifest.input.width
    faces, source = load_faces(side)
    total, rows = LoadResult(), []
    with served(args.model, args.server_arg, str(data_dir)) as target:
        for name, sessions, paced in (("saturated", args.saturate_sessions, False),
                                      ("paced 30 fps", args.paced_sessions, True)):
            print(f"gpu_check: serving, {name}: {sessions} sessions, {args.duration:.0f} s...", file=sys.stderr, flush=True)
            r = run_load(LoadSpec(target, sessions, args.duration, paced=paced, frames_per_batch=args.frames_per_batch,
                                  video_id=f"gpu-check-{'paced' if paced else 'saturated'}"), args.clients, faces)
            total.merge(r)
            rows.append(serving_row(name, sessions, r))
    stored = count_stored(f"sqlite:///{data_dir / 'affectline.db'}")
    log = data_dir / "server.log"
    ok = stored == total.frames_acked and not total.errors
    lines = [
        f"Server providers: {server_providers(log.read_text() if log.exists() else '')}; crops: {source}; "
        f"{args.frames_per_batch} frames per batch, native gRPC unary calls, {args.clients} client processes "
        f"on this host; server args: {' '.join(args.server_arg) or '(defaults)'}.",
        "",
        "| step | sessions | frames/s acked | p50 / p95 / p99 ms | acked/sent | errors | p99 < 100 ms, all acked |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
        f"Frames sent/acked/stored: {total.frames_sent}/{total.frames_acked}/{stored}"
        + (" (all acked frames stored)." if stored == total.frames_acked else " <- MISMATCH."),
    ]
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m affectline.bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the markdown report here too")
    ap.add_argument("--providers", default="cuda,tensorrt",
                    help=f"comma-separated, of: {', '.join(PROVIDERS)} (default: %(default)s)")
    ap.add_argument("--model", default=Settings().model, help="registered model (default: %(default)s)")
    ap.add_argument("--ceiling-seconds", type=float, default=2.0, help="seconds per timed ceiling run (default: 2)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per serving step (default: 20)")
    ap.add_argument("--clients", type=int, default=4, help="load-generating processes (default: 4)")
    ap.add_argument("--saturate-sessions", type=int, default=128, help="sessions sending back to back (default: 128)")
    ap.add_argument("--paced-sessions", type=int, default=200, help="sessions at 30 fps (default: 200)")
    ap.add_argument("--frames-per-batch", type=int, default=10)
    ap.add_argument("--server-arg", action="append", default=[], help="extra `affectline serve` argument (repeatable)")
    ap.add_argument("--skip-serving", action="store_true", help="only the raw ceiling")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.providers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown or not names:
        ap.error(f"--providers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(PROVIDERS)}")

    try:
        check_available(names)
        models = {PROVIDERS[n]: load_on(PROVIDERS[n], args.model) for n in names}
    except ProviderMissing as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2

    report = [
        "# Affectline GPU check", "",
        f"- Date (UTC): {datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        f"- Host: {platform.node()}, {os.cpu_count()} CPU cores; GPU: {gpu_description()}",
        f"- onnxruntime {ort.__version__}, providers available: {', '.join(ort.get_available_providers())}",
        f"- Model: `{next(iter(models.values())).key}`", "",
        "## Raw model ceiling (onnxruntime alone on pre-made tensors)", "",
    ]
    rows = []
    for provider, model in models.items():
        print(f"gpu_check: ceiling on {provider} ({model.variant})...", file=sys.stderr, flush=True)
        for point in measure_ceiling(model, batch_sizes=BATCH_SIZES, seconds=args.ceiling_seconds):
            rows.append((provider, model.variant, point))
    report += ceiling_table(rows)
    for provider in models:
        best = max((pt for p, _, pt in rows if p == provider), key=lambda pt: pt.images_per_s)
        report.append(f"\nBest on {provider}: {best.images_per_s:,.0f} images/s at batch {best.batch_size}.")
    ok = True
    if not args.skip_serving:
        report += ["", "## Serving benchmark (`affectline serve`, SQLite, encrypted batches)", ""]
        with tempfile.TemporaryDirectory() as data_dir:
            lines, ok = run_serving(args, Path(data_dir))
        report += lines
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        print(f"gpu_check: report written to {args.out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: raw model ceiling vs the full serving path, on this machine, in one run.

    python -m affectline.bench [--duration 20] [--clients 2] [--saturate-sessions 48]

Steps: (1) onnxruntime alone on pre-made tensors at several batch sizes (the ceiling);
(2) `affectline serve` in a subprocess with storage on (SQLite in a temp dir);
(3) saturation: sessions send encrypted 10-frame batches back to back -> frames/s and the
ratio to the ceiling; (4) capacity: sessions paced at 30 fps, stepping up the count until
p99 batch latency reaches 100 ms or errors appear; (5) frames stored (counted in the
database) vs frames acked. Client processes share the machine's cores with the server.
The ceiling's best point is timed again after every load step, and each step is also compared
with the higher of the timings just before and after it: these VMs drift by tens of percent
within minutes, so a ceiling timed minutes away can describe a different machine.
Rates and latency percentiles are steady state: batches sent in the first --warmup seconds
of a step (every session starting at once) count as frames, and their p99 is printed apart.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from affectline.bench.ceiling import measure_ceiling
from affectline.bench.sessions import LoadResult, LoadSpec, run_client_process
from affectline.config import Settings, settings_from_env
from affectline.serve_process import start_serve

FER_NPZ = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fer2013" / "fer2013.npz"
SLO_P99_S = 0.100


def load_faces(size: int) -> tuple[np.ndarray, str]:
    from affectline.face_crop import resize

    if FER_NPZ.exists():
        d = np.load(FER_NPZ)
        faces = d["pixels"][d["usage"] == 2][:512]
        return np.stack([resize(f, (size, size)) for f in faces]), "FER2013 PrivateTest crops"
    rng = np.random.default_rng(0)  # no face data here: smooth random images of the same size
    return rng.integers(0, 255, (64, size, size), dtype=np.uint8), "synthetic crops (FER2013 absent)"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def run_load(spec: LoadSpec, clients: int, faces: np.ndarray) -> LoadResult:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    per = [spec.sessions // clients + (1 if i < spec.sessions % clients else 0) for i in range(clients)]
    procs, first = [], 0
    for n in per:
        if n == 0:
            continue
        sub = LoadSpec(**{**spec.__dict__, "sessions": n})
        p = ctx.Process(target=run_client_process, args=(sub, faces, first, out))
        p.start()
        procs.append(p)
        first += n
    total = LoadResult()
    for _ in procs:
        total.merge(out.get(timeout=spec.duration_s + 120))
    for p in procs:
        p.join()
    return total


@contextmanager
def served(model: str, extra_args: list[str], data_dir: str | None = None) -> Iterator[str]:
    """Runs `affectline serve` with SQLite in `data_dir` (a temp dir if None); yields the gRPC
    target, and stops the server gracefully when the block ends."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(data_dir or scratch)
        try:
            server = start_serve(tmp, tmp / "server.log", ["--model", model, *extra_args], timeout_s=60)
        except RuntimeError as exc:
            raise SystemExit(f"server did not start: {exc}\n{(tmp / 'server.log').read_text()}") from exc
        try:
            yield server.grpc_target
        finally:
            server.stop()


def server_arg_value(server_args: list[str], flag: str) -> str | None:
    """The value given to `flag` among `--server-arg`s (`--flag=value` or `--flag`, `value`), or None."""
    for i, arg in enumerate(server_args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(server_args):
            return server_args[i + 1]
    return None


def count_stored(db_url: str) -> int:
    from affectline.storage.timeline_store import open_store

    with open_store(db_url) as store:
        return store.count_frames()


def within_slo(r: LoadResult) -> bool:
    return percentile(r.latencies_s, 99) < SLO_P99_S and not r.errors and r.frames_acked == r.frames_sent


def median_step(runs: list[LoadResult]) -> LoadResult:
    """The repeat with the median p99 stands for the step (these machines are noisy); errors and
    unacknowledged frames of any repeat still count against it."""
    ranked = sorted(runs, key=lambda r: percentile(r.latencies_s, 99))
    chosen = ranked[(len(ranked) - 1) // 2]
    merged = LoadResult(
        latencies_s=list(chosen.latencies_s), frames_sent=chosen.frames_acked, frames_acked=chosen.frames_acked,
        elapsed_s=chosen.elapsed_s, warmup_latencies_s=list(chosen.warmup_latencies_s),
        steady_frames=chosen.steady_frames, steady_s=chosen.steady_s,
    )
    for r in runs:
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
        merged.frames_sent += r.frames_sent - r.frames_acked  # any repeat's unacknowledged frames show
    return merged


def bisect_next(passed: int, failed: int | None) -> int | None:
    """The session count halfway between the most that passed and the fewest that failed; None
    when nothing failed (no upper bound to refine towards) or the two are adjacent."""
    if failed is None or failed - passed < 2:
        return None
    return (passed + failed) // 2


class CeilingTimings:
    """The ceiling's best point, timed again between load steps.

    `retime()` after each step returns the step's local ceiling: the higher of the timing just
    before the step and the one just after (the conservative choice for that step's ratio).
    `highest` is the run-wide conservative ceiling: the highest timing of the whole run.
    """

    def __init__(self, first: float, measure: Callable[[], float]) -> None:
        self._measure = measure
        self.timings = [first]

    def retime(self) -> float:
        self.timings.append(self._measure())
        return max(self.timings[-2], self.timings[-1])

    @property
    def highest(self) -> float:
        return max(self.timings)


def capacity_steps(spec: str, ceiling_images_per_s: float, fps: float = 30.0) -> list[int]:
    """Session counts to try: explicit ("20,40,60") or "auto": 30 %..100 % of the sessions the
    raw ceiling could feed at `fps`, so the step where the SLO breaks shows the ratio directly."""
    if spec != "auto":
        return [int(x) for x in spec.split(",")]
    most = ceiling_images_per_s / fps
    return sorted({max(1, round(most * f / 100)) for f in range(30, 101, 10)})


def sweep(args: argparse.Namespace, faces: np.ndarray) -> int:
    """Batcher knobs: each combination serves the same paced load; prints latency per setting."""
    delays = [float(x) for x in args.sweep_delays.split(",")]
    sizes = [int(x) for x in args.sweep_batch_sizes.split(",")]
    print(f"sweep: {args.sweep_sessions} sessions at 30 fps, {args.duration:.0f} s per setting", flush=True)
    print(f"{'max batch':>9} {'delay ms':>8} {'frames/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}")
    failed = False
    for size in sizes:
        for delay in delays:
            knobs = [f"--max-batch-size={size}", f"--max-queue-delay-ms={delay}", *args.server_arg]
            with served(args.model, knobs) as target:
                r = run_load(LoadSpec(target, args.sweep_sessions, args.duration, paced=True,
                                      frames_per_batch=args.frames_per_batch, transport=args.transport,
                                      warmup_s=args.warmup, pacing=args.pacing), args.clients, faces)
            lat = r.latencies_s
            print(f"{size:>9} {delay:>8g} {r.steady_fps:>9,.0f} {percentile(lat, 50) * 1000:>7.1f} "
                  f"{percentile(lat, 95) * 1000:>7.1f} {percentile(lat, 99) * 1000:>7.1f} {sum(r.errors.values()):>6}",
                  flush=True)
            failed = failed or bool(r.errors)
    return 1 if failed else 0


def describe(name: str, r: LoadResult) -> str:
    lat = [x * 1000 for x in r.latencies_s]
    warm = percentile([x * 1000 for x in r.warmup_latencies_s], 99)
    return (f"{name}: {r.steady_fps:,.0f} frames/s acked, batch latency p50 {percentile(lat, 50):.1f} ms "
            f"p95 {percentile(lat, 95):.1f} ms p99 {percentile(lat, 99):.1f} ms (warm-up p99 {warm:.0f} ms), "
            f"{r.frames_acked}/{r.frames_sent} frames acked, errors {r.errors or 0}")


def local_ratio(r: LoadResult, local_ceiling: float) -> str:
    return f"; {r.steady_fps / local_ceiling:.1%} of the ceiling timed around it ({local_ceiling:,.0f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m affectline.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=Settings().model, help="registered model (default: the server's, %(default)s)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per load step (default: 15)")
    ap.add_argument("--ceiling-seconds", type=float, default=1.0,
                    help="seconds per timed ceiling run (3 runs per batch size and layout) (default: 1)")
    ap.add_argument("--clients", type=int, default=2, help="client processes (default: 2)")
    ap.add_argument("--saturate-sessions", type=int, default=48, help="sessions in the saturation step (default: 48)")
    ap.add_argument("--capacity-steps", default="auto",
                    help="session counts tried at 30 fps, in order, e.g. 20,40,60; auto: 30, 40, ... 100 %% "
                         "of the sessions the raw ceiling could feed (default: auto)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs per capacity step; the run with the median p99 decides (default: 2)")
    ap.add_argument("--refine", type=int, default=2,
                    help="extra steps bisecting between the last passing and the first failing session count (default: %(default)s)")
    ap.add_argument("--frames-per-batch", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds at the start of each step kept out of latency and rate (default: 2)")
    ap.add_argument("--transport", choices=("unary", "stream"), default="unary",
                    help="unary: one PushCrops call per batch, as browsers must; stream: one StreamCrops "
                         "stream per session, as native gRPC partners may (default: unary)")
    ap.add_argument("--pacing", choices=("server", "random"), default="server",
                    help="paced steps: server: sessions send in the slots the server's answers name (send "
                         "pacing, as the browser client does); random: each session keeps an independent random "
                         "phase, as clients that ignore the hints do (default: server)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `affectline serve` argument (repeatable)")
    ap.add_argument("--sweep", action="store_true",
                    help="instead: serve a fixed paced load under each max-batch-size x max-queue-delay setting")
    ap.add_argument("--sweep-sessions", type=int, default=30, help="sessions at 30 fps in the sweep (default: 30)")
    ap.add_argument("--sweep-delays", default="1,2,5,10", help="max queue delays (ms) to sweep (default: 1,2,5,10)")
    ap.add_argument("--sweep-batch-sizes", default="32,64", help="max batch sizes to sweep (default: 32,64)")
    args = ap.parse_args(argv)

    from affectline.inference.engine import EmotionModel
    from affectline.inference.variant_probe import describe as describe_timings
    from affectline.models.registry import ModelRegistry

    # The variant is chosen once, here, and handed to the server: with `auto` each would time the
    # variants itself, and two near-equal ones could come out differently in the two processes.
    settings = settings_from_env()  # the server's own defaults and environment
    variant = server_arg_value(args.server_arg, "--model-variant") or "auto"
    model = EmotionModel.load(ModelRegistry().get(args.model), variant=variant,
                              intra_op_threads=settings.inference_threads, spin=bool(settings.inference_spin))
    if variant == "auto":
        args.server_arg = [*args.server_arg, f"--model-variant={model.variant}"]
    if args.sweep:
        return sweep(args, load_faces(model.crop_size[0])[0])  # crops of the size the server asks for
    timed = f" (timed here, crops/s: {describe_timings(model.variant_timings)})" if model.variant_timings else ""
    print(f"machine: {os.cpu_count()} cores; model {args.model}, variant {model.variant} (as served){timed}; "
          f"{args.transport} calls, {args.frames_per_batch} frames per batch, {args.pacing} phases", flush=True)
    print("[1/5] raw model ceiling (onnxruntime on pre-made tensors)...", flush=True)
    points = measure_ceiling(model, seconds=args.ceiling_seconds)
    if (os.cpu_count() or 1) > 1:  # the workers' layout: one single-threaded session per core
        points += measure_ceiling(model, seconds=args.ceiling_seconds, sessions=os.cpu_count() or 1)
    for p in points:
        print(f"      {p.layout:>22}, batch {p.batch_size:>4}: {p.images_per_s:,.0f} images/s")
    best = max(points, key=lambda p: p.images_per_s)
    print(f"      ceiling: {best.images_per_s:,.0f} images/s at batch {best.batch_size} ({best.layout})", flush=True)

    timings = CeilingTimings(best.images_per_s, lambda: measure_ceiling(
        model, batch_sizes=(best.batch_size,), seconds=args.ceiling_seconds, sessions=best.sessions)[0].images_per_s)
    faces, source = load_faces(model.crop_size[0])
    print(f"[2/5] starting affectline serve (SQLite in a temp dir), crops: {source}...", flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        with served(args.model, args.server_arg, data_dir) as target:
            total = LoadResult()
            print(f"[3/5] saturation: {args.saturate_sessions} sessions, batches back to back, {args.duration:.0f} s...", flush=True)
            sat = run_load(LoadSpec(target, args.saturate_sessions, args.duration, paced=False,
                                    frames_per_batch=args.frames_per_batch, transport=args.transport, warmup_s=args.warmup, video_id="bench-saturation"), args.clients, faces)
            total.merge(sat)
            sat_local = timings.retime()
            print("      " + describe("saturation", sat) + local_ratio(sat, sat_local), flush=True)

            steps = capacity_steps(args.capacity_steps, best.images_per_s)
            print(f"[4/5] capacity at 30 fps per session, {args.duration:.0f} s x {args.repeats} per step "
                  f"(steps: {', '.join(map(str, steps))} sessions)...", flush=True)
            capacity, capacity_result, capacity_local, first_failed = 0, None, 0.0, None

            def run_step(n: int, label: str = "") -> bool:
                nonlocal capacity, capacity_result, capacity_local, first_failed
                spec = LoadSpec(target, n, args.duration, paced=True, frames_per_batch=args.frames_per_batch,
                                transport=args.transport, video_id=f"bench-paced-{n}", warmup_s=args.warmup,
                                pacing=args.pacing)
                runs = []
                for _ in range(args.repeats):
                    runs.append(run_load(spec, args.clients, faces))
                    total.merge(runs[-1])
                step = median_step(runs)
                local = timings.retime()
                ok = within_slo(step)
                print("      " + describe(f"{n:>4} sessions", step) + local_ratio(step, local) + label
                      + ("" if ok else "  <- over SLO"), flush=True)
                if ok and n > capacity:
                    capacity, capacity_result, capacity_local = n, step, local
                if not ok and (first_failed is None or n < first_failed):
                    first_failed = n
                return ok

            for n in steps:
                if not run_step(n):
                    break
            # The steps are 10 % of the ceiling apart: bisect between the last pass and the first
            # failure so the capacity figure is not rounded down by a whole step.
            for _ in range(args.refine):
                mid = bisect_next(capacity, first_failed)
                if mid is None:
                    break
                run_step(mid, "  (refining)")
            print("[5/5] frames stored vs acked...", flush=True)
        stored = count_stored(f"sqlite:///{Path(data_dir) / 'affectline.db'}")
    # Ratios against the run's highest timing of the best point (the conservative choice), and
    # against the timings around the step itself (the same machine state as the step).
    ceiling = timings.highest

    sat_fps = sat.steady_fps
    print("\n=== summary ===")
    print(f"raw ceiling            {ceiling:,.0f} images/s (batch {best.batch_size}, {best.layout}; the highest of "
          f"{len(timings.timings)} timings in this run: {', '.join(f'{t:,.0f}' for t in timings.timings)})")
    print(f"serving, saturated     {sat_fps:,.0f} frames/s = {sat_fps / ceiling:.1%} of ceiling "
          f"({sat_fps / sat_local:.1%} of the {sat_local:,.0f} timed around it); "
          f"p50/p95/p99 {percentile(sat.latencies_s, 50) * 1000:.0f}/{percentile(sat.latencies_s, 95) * 1000:.0f}/"
          f"{percentile(sat.latencies_s, 99) * 1000:.0f} ms")
    if capacity_result is not None:
        cap_fps = capacity_result.steady_fps
        bound = f"; {first_failed} failed" if first_failed is not None else " (the top step: the capacity may be higher)"
        print(f"capacity at 30 fps     {capacity} sessions with p99 < 100 ms: {cap_fps:,.0f} frames/s = "
              f"{cap_fps / ceiling:.1%} of ceiling ({cap_fps / capacity_local:.1%} of the {capacity_local:,.0f} timed around it); "
              f"p99 {percentile(capacity_result.latencies_s, 99) * 1000:.0f} ms{bound}")
    else:
        print(f"capacity at 30 fps     below the first step ({steps[0]} sessions)")
    print(f"errors                 {total.errors or 0}")
    print(f"frames sent/acked/stored {total.frames_sent}/{total.frames_acked}/{stored}"
          + ("  (all acked frames stored)" if stored == total.frames_acked else "  <- MISMATCH"))
    return 0 if stored == total.frames_acked else 1


if __name__ == "__main__":
    sys.exit(main())

"""Analytics benchmark: ingest with rollups on vs off, then the main calls on a filled store.

    python -m affectline.bench.analytics --database-url postgresql://postgres@127.0.0.1:5432/test --sessions 1000

On PostgreSQL the run uses a fresh database (CREATE DATABASE next to the one named; dropped
at the end unless --keep). It checks that CompareVariants finds the planted effect (variant b
happier in seconds 20-30) and that random A/A splits of one variant rarely show one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from affectline import analytics as al
from affectline.bench.scratch_database import fresh_database
from affectline.demo_data import DemoSpec, session_batches, write_demo
from affectline.services.analytics_filter import parse_filter
from affectline.services.analytics_service import AnalyticsService, _attentive_enough, _summaries
from affectline.storage.database import make_engine, upgrade
from affectline.storage.records import ConsentInfo, SessionRecord, ViewerInfo
from affectline.storage.rollup_store import RollupStore
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import analytics_pb2 as pb


def ingest_frames_per_s(store: TimelineStore, video: str, sessions: int, spec: DemoSpec, rng: np.random.Generator) -> float:
    """Group commits as the server makes them: each group holds the next batch of every session."""
    now = datetime.now(UTC)
    batches = {}
    for i in range(sessions):
        sid = f"synthetic-{video}-{i}"
        store.create_session(SessionRecord(sid, video, "a", ViewerInfo(f"synthetic-{video}-{i}"),
                                           ConsentInfo("synthetic", now, ("emotion",)), spec.fps, "synthetic/1", now,
                                           now, b"\0" * 32, b"synthetic"))
        batches[sid] = session_batches(rng, spec, "a", now)
    frames = sum(len(b.frames) for bs in batches.values() for b in bs)
    start = time.perf_counter()
    for seq in range(max(len(bs) for bs in batches.values())):
        store.append_batches([(sid, bs[seq]) for sid, bs in batches.items() if seq < len(bs)])
    return frames / (time.perf_counter() - start)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectline.bench.analytics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", help="PostgreSQL server (a fresh database is made on it) or SQLite URL; "
                   "default: a temporary SQLite file")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--ingest-sessions", type=int, default=50, help="sessions per ingest run (default 50)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per RPC (default 30)")
    p.add_argument("--aa-splits", type=int, default=100, help="random A/A splits (default 100)")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = p.parse_args(argv)
    spec = DemoSpec(sessions=args.sessions, seconds=args.seconds, fps=args.fps, video_id="synthetic-bench")
    out = print
    with fresh_database(args.database_url, args.keep) as url:
        upgrade(url)
        engine = make_engine(url)
        out(f"database: {engine.dialect.name}; {spec.sessions} sessions x {spec.seconds} s x {spec.fps:g} fps")
        rng = np.random.default_rng(1)
        rates: dict[bool, list[float]] = {False: [], True: []}
        for run in range(2):  # interleaved, so drift in the host's load hits both alike
            for on in (False, True):
                store = TimelineStore(engine, rollups=on)
                rates[on].append(ingest_frames_per_s(store, f"ingest-{int(on)}-{run}", args.ingest_sessions,
                                                     DemoSpec(seconds=args.seconds, fps=args.fps), rng))
        off, on = max(rates[False]), max(rates[True])
        out(f"ingest ({args.ingest_sessions} sessions per group commit): rollups off {off:,.0f} frames/s, "
            f"on {on:,.0f} frames/s, ratio {on / off:.1%} (best of 2 each)")
        t = time.perf_counter()
        frames = write_demo(TimelineStore(engine), spec)
        out(f"demo-data: {frames:,} frames in {time.perf_counter() - t:.1f} s")

        service = AnalyticsService(store=TimelineStore(engine), rollups=RollupStore(engine))
        v = spec.video_id
        two = parse_filter(pb.AnalyticsFilter(genders=["f", "m"], age_bands=["18-24", "25-34", "35-44"]))
        none = parse_filter(pb.AnalyticsFilter())
        calls = {
            "video curve, two filters": lambda: service._video_curves(v, two),
            "key moments": lambda: service._key_moments(v, none, 0.05, 2.0),
            "A/B comparison": lambda: service._compare(v, "a", "b", none, al.ab_test.DEFAULT_METRICS, "engagement"),
            "segment breakdown (age band)": lambda: service._segments(v, none, pb.SEGMENT_FIELD_AGE_BAND, "age_band"),
        }
        for name, fn in calls.items():
            median, p99 = timed(fn, args.repeats)
            out(f"{name}: median {median:.0f} ms, p99 {p99:.0f} ms")

        found = service._compare(v, "a", "b", none, ("happy", *al.ab_test.DEFAULT_METRICS), "happy")
        happy = found.metrics[0]
        out(f"planted effect (happy, b-a): difference {happy.difference:+.4f}, CI [{happy.ci_low:+.4f}, "
            f"{happy.ci_high:+.4f}], Holm p {happy.holm_p:.2g}, reliable {happy.reliable}")
        out(f"verdict: {found.verdict}")
        rollups = RollupStore(engine)
        summaries = _summaries(_attentive_enough(rollups.session_totals(v, none.selection.__class__(variant_ids=("a",))), None))
        quick = al.ABConfig(n_resamples=999)
        rng = np.random.default_rng(2)
        false = 0
        for _ in range(args.aa_splits):
            order = rng.permutation(len(summaries))
            half = len(order) // 2
            c = al.compare_variants([summaries[i] for i in order[:half]], [summaries[i] for i in order[half:]],
                                    ("happy", *al.ab_test.DEFAULT_METRICS), quick)
            false += any(m.reliable for m in c.metrics)
        out(f"A/A splits of variant a: {false} of {args.aa_splits} show a reliable difference "
            f"({false / args.aa_splits:.0%}; family-wise alpha 5 %)")
        engine.dispose()
        ok = happy.reliable and happy.difference > 0 and false / args.aa_splits <= 0.10
        out("checks: " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

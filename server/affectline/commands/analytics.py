"""`affectline analytics rebuild` and `affectline demo-data`: maintenance of the analytics store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from affectline.commands.flags import add_db_flags


def add_parser(subparsers: Any) -> None:
    analytics = subparsers.add_parser("analytics", help="maintain the per-second rollups behind the analytics")
    sub = analytics.add_subparsers(dest="analytics_command", required=True, metavar="ANALYTICS_COMMAND")
    rebuild = sub.add_parser(
        "rebuild", help="recompute the rollups (and each session's seek state) from the stored frames",
        description="Recompute rollups from frames, session by session (one transaction each). "
                    "Example: affectline analytics rebuild --video trailer-1")
    rebuild.add_argument("--video", help="only this video's sessions (default: every session)")
    add_db_flags(rebuild)
    export = sub.add_parser(
        "export", help="write session timelines, per-second curves or per-viewer summaries as CSV or Parquet",
        description="Streams the rows of one video under the same filters as the API. "
                    "Example: affectline analytics export --video trailer-1 --what curves --format parquet "
                    "--variant b --age-band 18-24 -o curves.parquet")
    export.add_argument("--video", required=True, help="video id")
    export.add_argument("--what", choices=("timelines", "curves", "summaries"), default="curves")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("-o", "--output", help="file to write (default: stdout, CSV only)")
    for flag in ("variant", "age-band", "gender", "region"):
        export.add_argument(f"--{flag}", action="append", default=[], help=f"keep this {flag} (repeatable)")
    export.add_argument("--start-s", type=int, help="first video second")
    export.add_argument("--end-s", type=int, help="one past the last video second")
    export.add_argument("--passes", choices=("first", "rewatches", "all"), default="first")
    export.add_argument("--emotion", action="append", default=[],
                        help="report this emotion's columns (repeatable; default all seven)")
    export.add_argument("--min-attention", type=float, help="keep viewers attentive at least this share (0..1)")
    add_db_flags(export)
    demo = subparsers.add_parser(
        "demo-data", help="write synthetic sessions with a known planted A/B effect (for demos and benchmarks)",
        description="Synthetic viewers (ids 'synthetic-...') on two variants a and b; b is happier in seconds "
                    "20-30. Example: affectline demo-data --sessions 200 --seconds 60")
    demo.add_argument("--sessions", type=int, default=1000, help="sessions to write (default 1000)")
    demo.add_argument("--seconds", type=int, default=60, help="video length in seconds (default 60)")
    demo.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    demo.add_argument("--video", default="synthetic-demo", help="video id (default synthetic-demo)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_db_flags(demo)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from affectline.config import settings_from_env
    from affectline.storage.timeline_store import open_store

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open_store(settings.resolved_database_url, migrate=True, rollups=bool(settings.rollups)) as store:
        if args.command == "analytics" and args.analytics_command == "export":
            return _export(args, store, settings)
        if args.command == "analytics":
            sessions = store.session_ids(args.video)
            rows = 0
            for session_id in tqdm(sessions, desc="rebuild", unit="session", file=sys.stderr):
                rows += store.rebuild_rollups(session_id)
            print(f"rebuilt {rows} rollup rows of {len(sessions)} sessions")
            return 0
        from affectline.demo_data import DemoSpec, write_demo

        spec = DemoSpec(sessions=args.sessions, seconds=args.seconds, fps=args.fps, video_id=args.video, seed=args.seed)
        with tqdm(total=spec.sessions, desc="demo-data", unit="session", file=sys.stderr) as bar:
            frames = write_demo(store, spec, progress=bar.update)
        print(f"wrote {spec.sessions} sessions, {frames} frames to video {spec.video_id!r}")
    return 0


def _export(args: argparse.Namespace, store: Any, settings: Any) -> int:
    from dataclasses import replace

    from affectline import export
    from affectline.analytics.definitions import DEFAULT_CONFIG
    from affectline.storage.records import EMOTIONS
    from affectline.storage.rollup_store import RollupStore, Selection

    sel = Selection(variant_ids=tuple(args.variant), age_bands=tuple(args.age_band), genders=tuple(args.gender),
                    regions=tuple(args.region), start_s=args.start_s, end_s=args.end_s, passes=args.passes)
    rollups = RollupStore(store.engine)
    config = replace(DEFAULT_CONFIG, min_viewers=settings.min_segment_viewers)
    unknown = [e for e in args.emotion if e not in EMOTIONS]
    if unknown or (args.min_attention is not None and not 0.0 <= args.min_attention <= 1.0):
        print(f"affectline analytics export: unknown emotion {unknown[0]!r}" if unknown else
              "affectline analytics export: --min-attention must lie in [0, 1]", file=sys.stderr)
        return 2
    options = {"emotions": tuple(e for e in EMOTIONS if e in args.emotion) or None,
               "min_attention_share": args.min_attention}
    if args.what == "timelines":
        table = export.timelines(store, rollups, args.video, sel, **options)
    elif args.what == "curves":
        table = export.curves(rollups, args.video, sel, config, **options)
    else:
        table = export.summaries(rollups, args.video, sel, config, **options)
    if args.format == "parquet":
        if not args.output:
            print("affectline analytics export: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        with open(args.output, "wb") as f:
            rows = export.write_parquet(table, f)
    elif args.output:
        with open(args.output, "w", newline="") as f:
            rows = export.write_csv(table, f)
    else:
        rows = export.write_csv(table, sys.stdout)
    print(f"exported {rows} rows", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """For tests and tools: parse `analytics ...` / `demo-data ...` as the main CLI does."""
    parser = argparse.ArgumentParser(prog="affectline")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))

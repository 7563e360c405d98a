"""`affectline report VIDEO --out FILE.html|FILE.pdf`: a campaign's report from the store (docs/reports.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from affectline.commands.flags import add_db_flags

SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="write a campaign's report as one self-contained HTML file or a PDF",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Headline scores with norms, emotion and engagement curves, key moments with frames, the A/B "
                    "comparison, segments, method notes and limitations; every number from the AnalyticsService.",
        epilog="examples:\n"
               "  affectline report demo --out demo-report.pdf\n"
               "  affectline report trailer-1 --compare a b --filter region=DE,FR --filter start=10 --out r.html\n"
               "filter keys (the dashboard's URL parameters): variant, age, gender, region, emotions, start, end, "
               "from, to, minAttention, passes")
    p.add_argument("video_id", metavar="VIDEO", help="video id (affectline videos list)")
    p.add_argument("--variant", help="report on this variant only")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="the A/B section's variants (default: the video's first two variants with viewers)")
    p.add_argument("--filter", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="narrow the viewers, e.g. age=25-34,35-44 gender=f region=DE emotions=happy,surprise start=10 "
                        "end=30 from=2026-11-01 to=2026-11-30 minAttention=0.5 passes=all (repeatable)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="FILE.html or FILE.pdf")
    add_db_flags(p)


def run(args: argparse.Namespace) -> int:
    from connectrpc.errors import ConnectError

    from affectline.analytics.definitions import DEFAULT_CONFIG
    from affectline.config import settings_from_env
    from affectline.reports import PdfUnavailable, build_report, report_request, split_pairs
    from affectline.services.analytics_service import AnalyticsService
    from affectline.storage.rollup_store import RollupStore
    from affectline.storage.timeline_store import open_store

    fmt = SUFFIXES.get(args.out.suffix.lower())
    if fmt is None:
        print(f"affectline report: --out {args.out}: the name must end in .html or .pdf", file=sys.stderr)
        return 2
    request = report_request(args.video_id, split_pairs(args.filter), variant=args.variant,
                             compare=tuple(args.compare) if args.compare else None)
    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    with open_store(settings.resolved_database_url, migrate=True, rollups=bool(settings.rollups)) as store:
        # The same service and metric settings as `serve` (app.build_parts).
        service = AnalyticsService(store=store, rollups=RollupStore(store._engine),
                                   config=replace(DEFAULT_CONFIG, min_viewers=settings.min_segment_viewers))
        try:
            body = asyncio.run(build_report(service, store, request, fmt))
        except ConnectError as exc:
            print(f"affectline report: {exc.message}", file=sys.stderr)
            return 2
        except PdfUnavailable as exc:
            print(f"affectline report: {exc} (or write --out FILE.html)", file=sys.stderr)
            return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(body)
    print(f"wrote {args.out} ({len(body) / 1024:.0f} KiB, {fmt})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """For tests and tools: parse `report ...` as the main CLI does."""
    parser = argparse.ArgumentParser(prog="affectline")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))

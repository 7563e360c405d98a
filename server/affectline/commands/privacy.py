"""`affectline privacy erase|purge|export|consent-export`: the viewers' data lifecycle
(docs/privacy.md)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from affectline.commands.flags import add_db_flags


def add_parser(subparsers: Any) -> None:
    privacy = subparsers.add_parser("privacy", help="erasure, retention, subject access and consent records",
                                    description="The lifecycle of viewers' data (docs/privacy.md).")
    sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="PRIVACY_COMMAND")
    erase = sub.add_parser("erase", help="delete a viewer and every session, frame and rollup recorded for them",
                           epilog="example: affectline privacy erase --viewer-id viewer-42")
    erase.add_argument("--viewer-id", required=True, help="the pseudonymous viewer id used in StartSession")
    purge = sub.add_parser(
        "purge", help="delete sessions past their retention now (`serve` also does it hourly)",
        description="Deletes each session older than its campaign's retention (`videos set-retention`), or the "
                    "global default where the campaign has none, and viewers left without sessions.",
        epilog="example: affectline privacy purge --older-than-days 90")
    purge.add_argument("--older-than-days", type=int,
                       help="global default for campaigns without their own (default: AFFECTLINE_RETENTION_DAYS)")
    export = sub.add_parser(
        "export", help="subject access: everything stored about a viewer, as JSON",
        description="Writes the viewer row, their sessions with consent records, frames, batches and rollups "
                    "(every table that names the viewer or their sessions) as JSON. Key material is withheld.",
        epilog="example: affectline privacy export --viewer-id viewer-42 --out viewer-42.json")
    export.add_argument("--viewer-id", required=True)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    consent = sub.add_parser(
        "consent-export", help="consent records for audits, as CSV or JSON",
        description="One record per session: session id, viewer id, video, variant, notice version, consented_at, "
                    "scopes, started, ended, end reason. The format follows --out's extension (.csv or .json).",
        epilog="example: affectline privacy consent-export --since 2026-01-01 --video trailer-1 --out consent.csv")
    consent.add_argument("--since", help="only sessions started on or after this date (YYYY-MM-DD, UTC) or ISO time")
    consent.add_argument("--video", dest="video_id", help="only this video's sessions")
    consent.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.json")
    for p in (erase, purge, export, consent):
        add_db_flags(p)


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected YYYY-MM-DD or an ISO date-time") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def run(args: argparse.Namespace) -> int:
    from affectline.config import settings_from_env
    from affectline.storage.database import make_engine, upgrade
    from affectline.storage.privacy_store import CONSENT_FIELDS, PrivacyStore
    from affectline.storage.timeline_store import TimelineStore

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    if args.privacy_command == "consent-export" and args.out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: the name must end in .csv or .json")
    if args.privacy_command == "purge" and args.older_than_days is not None and args.older_than_days <= 0:
        raise ValueError("--older-than-days must be > 0")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        privacy = PrivacyStore(engine)
        if args.privacy_command == "erase":
            n = TimelineStore(engine).erase_viewer(args.viewer_id)
            print(f"erased viewer {args.viewer_id!r}: {n} sessions with their frames and rollups")
        elif args.privacy_command == "purge":
            days = args.older_than_days if args.older_than_days is not None else settings.retention_days
            overrides = privacy.retention_overrides()
            purged = privacy.purge_expired(datetime.now(timezone.utc), days)
            scope = f"older than {days} days" if days > 0 else "(global default: keep)"
            print(f"purged {purged} sessions {scope}; {len(overrides)} campaigns with their own retention")
        elif args.privacy_command == "export":
            data = privacy.export_viewer(args.viewer_id)
            if data is None:
                print(f"affectline privacy export: no data stored for viewer {args.viewer_id!r}", file=sys.stderr)
                return 1
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
            if args.out:
                args.out.write_text(text)
                print(f"wrote {args.out}: viewer {args.viewer_id!r}, {len(data['sessions'])} sessions", file=sys.stderr)
            else:
                sys.stdout.write(text)
        else:
            records = list(privacy.consent_records(_since(args.since), args.video_id))
            if args.out.suffix.lower() == ".json":
                args.out.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
            else:
                with args.out.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=CONSENT_FIELDS)
                    writer.writeheader()
                    for r in records:
                        writer.writerow({**r, "scopes": " ".join(r["scopes"]), "ended_at": r["ended_at"] or ""})
            print(f"wrote {args.out}: {len(records)} consent records")
    finally:
        engine.dispose()
    return 0

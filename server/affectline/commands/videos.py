"""`affectline videos add|list`: the catalogue of playable videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from affectline.commands.flags import add_db_flags


def add_parser(subparsers: Any) -> None:
    videos = subparsers.add_parser("videos", help="register and list playable videos")
    sub = videos.add_subparsers(dest="videos_command", required=True, metavar="VIDEOS_COMMAND")
    add = sub.add_parser("add", help="register a media file (WebM/VP8 or VP9 plays everywhere; the file is not copied)")
    add.add_argument("file", type=Path, metavar="FILE")
    add.add_argument("--title", required=True)
    add.add_argument("--id", dest="video_id", help="video id (default: the file name without extension)")
    add.add_argument("--variant", default="", help="also register this variant id")
    add.add_argument("--retention-days", type=int,
                     help="keep this campaign's sessions N days (default: AFFECTLINE_RETENTION_DAYS)")
    lst = sub.add_parser("list", help="list registered videos")
    ret = sub.add_parser("set-retention", help="days this campaign's sessions are kept, on top of the global default",
                         epilog="example: affectline videos set-retention trailer-1 --days 30")
    ret.add_argument("video_id", metavar="VIDEO")
    days = ret.add_mutually_exclusive_group(required=True)
    days.add_argument("--days", type=int, help="delete its sessions N days after they started (N > 0)")
    days.add_argument("--default", action="store_true", help="follow AFFECTLINE_RETENTION_DAYS again")
    for p in (add, lst, ret):
        add_db_flags(p)


def run(args: argparse.Namespace) -> int:
    from affectline.config import settings_from_env
    from affectline.storage.timeline_store import open_store
    from affectline.videos import add_video

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    days = (None if args.default else args.days) if args.videos_command == "set-retention" else getattr(args, "retention_days", None)
    if days is not None and days <= 0:
        raise ValueError("retention days must be > 0")
    with open_store(settings.resolved_database_url, migrate=True) as store:
        from affectline.storage.privacy_store import PrivacyStore

        privacy = PrivacyStore(store._engine)
        if args.videos_command == "set-retention":
            try:
                privacy.set_retention(args.video_id, None if args.default else args.days)
            except KeyError:
                print(f"affectline videos set-retention: unknown video {args.video_id!r}", file=sys.stderr)
                return 2
            print(f"{args.video_id}\tretention {'default' if args.default else f'{args.days} days'}")
            return 0
        if args.videos_command == "add":
            try:
                vid = add_video(store, args.file, args.title, args.video_id, args.variant)
            except FileNotFoundError:
                print(f"affectline videos add: no such file: {args.file}", file=sys.stderr)
                return 2
            if args.retention_days is not None:
                privacy.set_retention(vid, args.retention_days)
            print(f"{vid}\t/watch/{vid}")
        else:
            for v in store.list_videos():
                print(f"{v['video_id']}\t{v['title']}\t{v['mime_type'] or '-'}\t{','.join(v['variants'])}\t{v['media_path'] or '-'}")
    return 0

"""`affectline videos add|list`: the catalogue of playable videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from affectline.cli_flags import add_db_flags


def add_parser(subparsers: Any) -> None:
    videos = subparsers.add_parser("videos", help="register and list playable videos")
    sub = videos.add_subparsers(dest="videos_command", required=True, metavar="VIDEOS_COMMAND")
    add = sub.add_parser("add", help="register a media file (WebM/VP8 or VP9 plays everywhere; the file is not copied)")
    add.add_argument("file", type=Path, metavar="FILE")
    add.add_argument("--title", required=True)
    add.add_argument("--id", dest="video_id", help="video id (default: the file name without extension)")
    add.add_argument("--variant", default="", help="also register this variant id")
    lst = sub.add_parser("list", help="list registered videos")
    for p in (add, lst):
        add_db_flags(p)


def run(args: argparse.Namespace) -> int:
    from affectline.config import settings_from_env
    from affectline.storage.timeline_store import open_store
    from affectline.videos import add_video

    settings = settings_from_env().with_overrides(database_url=args.database_url, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open_store(settings.resolved_database_url, migrate=True) as store:
        if args.videos_command == "add":
            try:
                vid = add_video(store, args.file, args.title, args.video_id, args.variant)
            except FileNotFoundError:
                print(f"affectline videos add: no such file: {args.file}", file=sys.stderr)
                return 2
            print(f"{vid}\t/watch/{vid}")
        else:
            for v in store.list_videos():
                print(f"{v['video_id']}\t{v['title']}\t{v['mime_type'] or '-'}\t{','.join(v['variants'])}\t{v['media_path'] or '-'}")
    return 0

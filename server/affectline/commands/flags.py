"""Flags shared by several `affectline` subcommands, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_db_flags(p: argparse.ArgumentParser) -> None:
    """--database-url and --data-dir: where a command finds the store (same meaning as for `serve`)."""
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite file in the data dir); "
                   "e.g. postgresql://postgres@127.0.0.1:5432/affectline [AFFECTLINE_DATABASE_URL]")
    p.add_argument("--data-dir", type=Path, help="folder for the SQLite file and the key file [AFFECTLINE_DATA_DIR]")

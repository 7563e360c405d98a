"""A throwaway database for a benchmark run: a fresh PostgreSQL database beside the one named
(dropped at the end unless `keep`), or a temporary SQLite file when no PostgreSQL URL is given."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import make_url


@contextmanager
def fresh_database(url: str | None, keep: bool) -> Iterator[str]:
    if url is None or not url.startswith("postgres"):
        with tempfile.TemporaryDirectory() as tmp:
            yield url or f"sqlite:///{tmp}/bench.db"
        return
    admin = make_url(url).set(drivername="postgresql")
    name = f"affectline_bench_{secrets.token_hex(4)}"
    libpq = admin.render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

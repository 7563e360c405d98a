"""Binary COPY into a per-connection staging table, for the PostgreSQL write path.

COPY is the fast way in, but it cannot skip or merge rows that are already stored; so a group's
rows go into a temporary table (made once per pooled connection, emptied at commit) and one
INSERT .. SELECT / UPDATE .. FROM moves them with ON CONFLICT. Used for the batches
(timeline_store) and the rollups and seek states (rollup_ingest).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@contextmanager
def staging_cursor(conn: Connection, create_sql: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor on `conn`'s own psycopg connection (so inside its transaction), after `create_sql`
    (CREATE TEMP TABLE IF NOT EXISTS .. ON COMMIT DELETE ROWS) ran once on that connection.
    psycopg errors come out as SQLAlchemy's (e.g. sqlalchemy.exc.IntegrityError), as on the Core path."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    info = conn.connection.info
    try:
        with raw.cursor() as cursor:
            if not info.get(create_sql):
                cursor.execute(create_sql)
                info[create_sql] = True
            yield cursor
    except psycopg.Error as exc:
        raise DBAPIError.instance(create_sql, None, exc, psycopg.Error) from exc


def copy_rows(cursor: psycopg.Cursor[Any], copy_sql: str, types: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY .. FROM STDIN (FORMAT BINARY) of `rows`, typed by `types` (PostgreSQL type names)."""
    with cursor.copy(copy_sql) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)

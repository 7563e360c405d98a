"""Day partitions of `batches` on PostgreSQL (native declarative partitioning, migration 0010).

`batches` is partitioned by RANGE (session_day), the UTC day its session started, one
partition per day named `batches_dYYYYMMDD`, plus `batches_default` for anything outside
them (normally empty). A partition is made before the first session of its day is stored
(`DayPartitions.ensure`) and ahead of time at start-up, so rows never land in the default
partition (which would then block creating that day's partition). Retention drops a whole
day whose sessions are all past it (`droppable_days` and `drop`), instead of deleting rows.

SQLite has one plain `batches` table: every method here is a no-op there.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

TABLE = "batches"
_NAME = re.compile(rf"^{TABLE}_d(\d{{8}})$")


def session_day(started_at: datetime) -> date:
    """The partition key of a session's batches: the UTC day it started."""
    return started_at.astimezone(UTC).date()


def partition_name(day: date) -> str:
    return f"{TABLE}_d{day:%Y%m%d}"


def create_sql(day: date) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')")


def list_days(conn: Connection) -> list[date]:
    """The days that have a partition, oldest first."""
    days = [datetime.strptime(m.group(1), "%Y%m%d").date() for n in partition_tables(conn) if (m := _NAME.match(n))]
    return sorted(days)


def partition_tables(conn: Connection) -> set[str]:
    """Every partition's table name (for code that reflects the schema and must skip them)."""
    if conn.dialect.name != "postgresql":
        return set()
    return set(conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t"), {"t": TABLE}).scalars())


def droppable_days(conn: Connection, before: date, keep_videos: Collection[str] = ()) -> list[date]:
    """Partitioned days before `before` none of whose sessions belong to `keep_videos`
    (videos whose own retention is longer than the one being applied)."""
    days = [d for d in list_days(conn) if d < before]
    if not days or not keep_videos:
        return days
    kept = set(conn.execute(text(
        "SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM sessions "
        "WHERE started_at < :before AND video_id = ANY(:videos)"),
        {"before": datetime.combine(before, datetime.min.time(), UTC), "videos": list(keep_videos)}).scalars())
    return [d for d in days if d not in kept]


def drop(conn: Connection, days: Collection[date]) -> int:
    """Drops the partitions of `days` (their batches go at once, without row deletes); returns
    how many. The caller then deletes those days' sessions, which cascades to nothing more."""
    for day in sorted(days):
        conn.execute(text(f"DROP TABLE IF EXISTS {partition_name(day)}"))
    return len(days)


class DayPartitions:
    """Makes sure the partition of a day exists before a session of that day is stored."""

    def __init__(self, engine: Engine, *, ahead_days: int = 1) -> None:
        self._engine = engine
        self._enabled = engine.dialect.name == "postgresql"
        self._ahead_days = ahead_days
        self._known: set[date] = set()
        self._lock = threading.Lock()

    def prepare(self, today: date | None = None) -> None:
        """At start-up: learn the existing partitions and make today's and the next days'."""
        if not self._enabled:
            return
        with self._engine.connect() as conn:
            self._known.update(list_days(conn))
        today = today or datetime.now(UTC).date()
        for offset in range(self._ahead_days + 1):
            self.ensure(today + timedelta(days=offset))

    def ensure(self, day: date) -> None:
        if not self._enabled or day in self._known:
            return
        with self._lock:
            if day in self._known:
                return
            # Its own short transaction: CREATE .. PARTITION OF locks the parent table, which
            # must not be held through a session insert.
            try:
                with self._engine.begin() as conn:
                    conn.execute(text(create_sql(day)))
            except DBAPIError as exc:
                # Another replica made it at the same moment (IF NOT EXISTS does not cover the
                # race in the catalog); anything else is a real failure.
                with self._engine.connect() as conn:
                    if day not in list_days(conn):
                        raise
                log.debug("partition %s was made concurrently: %s", partition_name(day), exc)
            self._known.add(day)
            log.info("made partition %s", partition_name(day))

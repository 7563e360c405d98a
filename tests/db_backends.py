"""Database fixtures that run a test once per backend: a SQLite file and PostgreSQL.

PostgreSQL uses a throwaway database ``affectline_test_<hex>`` on the server named by
$AFFECTLINE_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test, used only to
CREATE/DROP DATABASE). It is migrated once per test session and emptied before each test;
when the server cannot be reached the PostgreSQL cases are skipped with the reason.

Fixtures: ``db_url`` (migrated, empty tables), ``db_engine`` (an engine on it) and
``empty_db_url`` (a brand-new database with no schema, for migration tests).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL, Engine, make_url, text
from sqlmodel import SQLModel

import affectline.storage.tables  # noqa: F401  (fills SQLModel.metadata)
from affectline.storage.database import make_engine, upgrade

PG_URL_ENV = "AFFECTLINE_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> URL:
    """The maintenance database's URL, once the server is known to answer."""
    url = make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))
    try:
        psycopg.connect(_libpq(url), autocommit=True, connect_timeout=3).close()
    except psycopg.Error as exc:
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        pytest.skip(f"PostgreSQL not reachable at {where}: {str(exc).strip()}")
    return url


@contextmanager
def _throwaway_pg_database(admin: URL) -> Iterator[str]:
    name = f"affectline_test_{secrets.token_hex(6)}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            # FORCE: a leaked connection must not leave the database behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_migrated_url(pg_admin_url: URL) -> Iterator[str]:
    with _throwaway_pg_database(pg_admin_url) as url:
        upgrade(url)
        yield url


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    try:
        names = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a migrated database whose tables are empty."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'affectline.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("pg_migrated_url")
    _truncate_all(url)
    return url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with _throwaway_pg_database(request.getfixturevalue("pg_admin_url")) as url:
        yield url


__all__ = ["db_engine", "db_url", "empty_db_url", "pg_admin_url", "pg_migrated_url"]

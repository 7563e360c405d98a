"""Engines and schema migrations for the timeline store.

The schema is only ever made by the Alembic migrations in the repository's ``migrations/``
folder, driven here through Alembic's Python API (no alembic.ini needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

DEFAULT_DATABASE_URL = "sqlite:///./data/affectline.db"
MIGRATIONS_DIR_ENV = "AFFECTLINE_MIGRATIONS_DIR"
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5


def redact_url(url: str | URL) -> str:
    """The URL with its password masked, safe for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def normalise_url(url: str | URL) -> URL:
    """Pin PostgreSQL URLs to psycopg 3 (the store uses its COPY API)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """A thread-safe engine for SQLite (file or memory) or PostgreSQL."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A bounded connect: a database host that drops packets fails a connect in seconds, not
        # after the kernel's TCP timeout (minutes). A connect_timeout in the URL wins.
        connect = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed,
        # The store is called from worker threads (asyncio.to_thread).
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        # A memory database lives in one connection, so every thread must share it.
        poolclass=StaticPool if in_memory else None,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers proceed while a batch is being written.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
    finally:
        cursor.close()


def migrations_dir() -> Path:
    """The Alembic script folder: $AFFECTLINE_MIGRATIONS_DIR or <repo root>/migrations."""
    override = os.environ.get(MIGRATIONS_DIR_ENV)
    path = Path(override) if override else Path(__file__).resolve().parents[3] / "migrations"
    if not (path / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic migrations not found at {path} (no env.py). Run from a source checkout "
            f"or set {MIGRATIONS_DIR_ENV} to the repository's migrations/ folder."
        )
    return path


def alembic_config() -> Config:
    config = Config()
    # set_main_option interpolates "%", so escape it in the path.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision`; a no-op when it is already there."""
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            # migrations/env.py runs on this connection instead of opening its own.
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

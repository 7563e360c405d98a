"""Alembic environment for the timeline store.

Normally driven from affectline.storage.database.upgrade(), which hands over an open
connection in ``config.attributes["connection"]``. Otherwise the URL comes from the
Config's ``sqlalchemy.url`` option (e.g. ``alembic -x`` style tooling or offline ``--sql``).
"""

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import affectline.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from affectline.storage.database import make_engine, normalise_url

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=normalise_url(config.get_main_option("sqlalchemy.url") or ""),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or attributes['connection']")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

"""Alembic environment for tokenward's SQL store.

Normally run in-process by :meth:`tokenward.store.sql.SQLStore.open` (and ``tokenward db
upgrade``), which hands over an open connection in ``config.attributes["connection"]`` that
already holds the migration lock inside a transaction. For development (``alembic revision``
with a config built by :func:`tokenward.store.sql.alembic_config`), a synchronous engine is
made from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tokenward.store.sql.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations through `tokenward db upgrade --store URL`")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()

"""Engines and migrations for :class:`~tokenward.store.sql.SQLStore`.

* SQLite (``aiosqlite``): sqlite3's own transaction handling is switched off and SQLAlchemy
  emits ``BEGIN`` itself — ``BEGIN IMMEDIATE`` on connections of the *writer* engine (execution
  option ``tokenward_write``), a plain deferred ``BEGIN`` for multi-statement reads
  (SQLAlchemy's documented ``begin``-event recipe), and no ``BEGIN`` at all for a single
  read-only statement (execution option ``tokenward_autocommit``: SQLite runs it in its own
  implicit read transaction, one consistent snapshot). Every connection gets ``busy_timeout``,
  the WAL journal and ``synchronous = FULL``.
* PostgreSQL (``psycopg`` 3 async): READ COMMITTED, a pool (no pre-ping by default: a
  connection older than ``_PG_RECYCLE`` is replaced; a dead one fails its first statement,
  see ``SQLStore._read``), ``connect_timeout``,
  ``statement_timeout`` and ``lock_timeout`` from the store's ``timeout``, and the store's
  ``schema`` as ``search_path``.
* Alembic runs in-process on a connection we hand it (``config.attributes["connection"]``),
  with a ``Config`` built in code — no ``alembic.ini`` anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "MIGRATIONS_DIR",
    "UNAVAILABLE_ERRORS",
    "alembic_config",
    "current_revision_sync",
    "hard_deadline",
    "head_revision",
    "postgres_engine",
    "sqlite_engine",
    "upgrade_sync",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: What "the database cannot be reached / answered too late" looks like.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # refused, reset, statement/lock timeout, "database is locked"
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    TimeoutError,
    OSError,
)


def private_sqlite_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it, and tighten an
    existing one (and its ``-wal``/``-shm``): it holds password hashes, session data and the
    encrypted keys. SQLite creates ``-wal``/``-shm`` with the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)


def sqlite_engine(url: URL, *, timeout: float, memory: bool, pool: tuple[int, int]) -> AsyncEngine:
    url = url.set(drivername="sqlite+aiosqlite")
    # statement parameters (password hashes, token hashes, user input) never reach a log or
    # an exception's text
    kwargs: dict[str, Any] = {"connect_args": {"timeout": timeout}, "hide_parameters": True}
    if memory:
        url = url.set(database=":memory:")  # StaticPool: one shared connection
    else:
        private_sqlite_file(Path(str(url.database)).expanduser())
        kwargs.update(pool_size=pool[0], max_overflow=pool[1], pool_timeout=timeout)
    engine = create_async_engine(url, **kwargs)
    busy_ms = int(timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, not sqlite3
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            # every transaction of this engine (sign-ins, revocations, admin changes) is
            # fsynced before it is acknowledged; the refresh path's rotations run on their
            # own connection (.lane) at NORMAL, see docs/stores.md "Durability"
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("tokenward_autocommit", False):
            return  # one read-only statement: its own implicit (deferred) transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("tokenward_write") else "BEGIN")

    return engine


#: seconds after which a pooled PostgreSQL connection is replaced at checkout
_PG_RECYCLE = 1800


def postgres_engine(
    url: URL,
    *,
    timeout: float,
    schema: str | None,
    pool: tuple[int, int],
    pre_ping: bool = False,
) -> AsyncEngine:
    ms = int(timeout * 1000)
    # a transaction idle far longer than any call may take belongs to a lost client: the
    # server ends it (and releases its row locks) instead of holding them forever
    idle_ms = max(30_000, 10 * ms)
    options = (
        f"-c statement_timeout={ms} -c lock_timeout={ms}"
        f" -c idle_in_transaction_session_timeout={idle_ms}"
    )
    if schema:
        options += f" -c search_path={schema}"
    return create_async_engine(
        url.set(drivername="postgresql+psycopg"),
        connect_args={"connect_timeout": max(2, math.ceil(timeout)), "options": options},
        isolation_level="READ COMMITTED",
        hide_parameters=True,  # statement parameters never reach a log or an exception's text
        pool_size=pool[0],
        max_overflow=pool[1],
        pool_timeout=timeout,
        pool_pre_ping=pre_ping,
        pool_recycle=_PG_RECYCLE,  # replaces idle connections a firewall may have dropped
    )


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` for tokenward's migrations, built in code (no ``alembic.ini``).

    ``url`` (a *synchronous* SQLAlchemy URL) is only needed for development commands such as
    ``alembic revision``; the store hands Alembic its own connection instead.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(connection: Connection) -> None:
    """Upgrade to head on ``connection`` (inside the caller's transaction)."""
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def current_revision_sync(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    rev: str | None = MigrationContext.configure(connection).get_current_revision()
    return rev


@functools.cache
def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head


@contextlib.asynccontextmanager
async def hard_deadline(seconds: float, every: float = 0.1) -> AsyncIterator[None]:
    """Keep a timeout a timeout. ``asyncio.timeout`` cancels once, and psycopg answers that
    cancellation by cancelling the query on the server (a new connection, then a wait: up to
    5 s + 5 s when the network is silent). Past the deadline, cancel again every ``every``
    seconds: psycopg then closes the connection and gives up (its "second Ctrl-C" path)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    handles: list[asyncio.TimerHandle] = []

    def kick() -> None:
        task.cancel()
        handles.append(loop.call_later(every, kick))

    handles.append(loop.call_later(seconds + every, kick))
    try:
        yield
    except asyncio.CancelledError:
        if len(handles) > 1:
            raise TimeoutError from None
        raise
    finally:
        handles[-1].cancel()
        for _ in handles[1:]:  # one per kick
            task.uncancel()

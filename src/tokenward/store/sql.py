"""``sqlite://`` and ``postgresql://``: one SQLAlchemy 2 Core (async) code path for both.

* ``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db`` — ``aiosqlite``, WAL journal,
  ``busy_timeout``, and ``BEGIN IMMEDIATE`` for every write transaction, so the single SQLite
  writer lock is taken *before* the first read of a read-modify-write (no upgrade deadlocks,
  no lost updates, across threads and processes). ``sqlite:///:memory:`` shares one connection
  (``StaticPool``), so every call is serialised by an in-process lock.
* ``postgresql://user@host:5432/db[?schema=name]`` — ``psycopg`` 3 async, pooled, READ
  COMMITTED. :meth:`SQLStore.rotate` first locks the family row (``SELECT … FOR UPDATE``), then
  consumes the parent with a conditional ``UPDATE … WHERE consumed_at IS NULL RETURNING``, so
  of N racers exactly one rotates and the others see the committed outcome.

Options (``SQLStore(url, **options)``): ``timeout`` (seconds, default 2.0: every call is bounded,
plus ``busy_timeout`` / ``connect_timeout`` / ``statement_timeout`` in the driver),
``schema`` (PostgreSQL only; also ``?schema=`` in the URL), ``pool_size``, ``max_overflow``,
``poll_interval`` (the SQLite feed). Driver errors and timeouts surface as
:class:`~tokenward.errors.StoreUnavailable` naming the backend, never the password.

:meth:`SQLStore.open` applies the Alembic migrations to head under a lock
(``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so several processes
may open the same database at once. See ``docs/stores.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import ConfigurationError, StoreUnavailable
from .base import (
    Client,
    Family,
    PurgeCounts,
    RefreshTokenRecord,
    RevocationEvent,
    RevocationKind,
    RotationOutcome,
    RotationResult,
    Store,
    User,
)
from .sql_listener import NOTIFY_CHANNEL, PgListener
from .sql_schema import (
    REVOCATION_COUNTER,
    clients,
    counters,
    families,
    keys,
    refresh_tokens,
    revocations,
    secrets,
    users,
)

__all__ = ["MIGRATIONS_DIR", "SQLStore", "alembic_config"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
REUSE_REASON = "refresh_token_reuse"
SUBJECT_REASON = "subject_revoked"
_PURGE_BATCH = 500
_MIGRATE_TIMEOUT = 60.0
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_UNAVAILABLE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    TimeoutError,
    OSError,
)


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` for tokenward's migrations, built in code (no ``alembic.ini``).

    ``url`` (a *synchronous* SQLAlchemy URL) is only needed for development commands such as
    ``alembic revision``; the store passes its own connection instead.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade_sync(connection: Connection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _current_revision_sync(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    rev: str | None = MigrationContext.configure(connection).get_current_revision()
    return rev


class SQLStore(Store):
    """The SQL backend. ``SQLStore("sqlite:///var/tokenward.db")``; open before use."""

    schemes = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+psycopg")

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        schema: str | None = None,
        pool_size: int = 10,
        max_overflow: int = 10,
        poll_interval: float = 0.2,
    ) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ConfigurationError(f"SQLStore does not handle {backend!r} URLs")
        self.backend = "sqlite" if backend == "sqlite" else "postgresql"
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self._pool = (int(pool_size), int(max_overflow))
        query_schema = parsed.query.get("schema")
        if isinstance(query_schema, tuple):
            query_schema = query_schema[-1]
        self.schema = schema or query_schema or None
        parsed = parsed.difference_update_query(["schema"])
        if self.schema is not None:
            if self.backend != "postgresql":
                raise ConfigurationError("the schema option is for PostgreSQL stores")
            if not _SCHEMA_RE.match(self.schema):
                raise ConfigurationError("schema must be a plain SQL identifier")
        self._url: URL = parsed
        self.memory = self.backend == "sqlite" and parsed.database in (None, "", ":memory:")
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._lock = asyncio.Lock()  # SQLite: one writer per process at a time
        self._listener: PgListener | None = None

    def __repr__(self) -> str:
        return f"SQLStore({self.safe_url!r})"

    @property
    def safe_url(self) -> str:
        """The URL with any password masked (for messages and logs)."""
        return self._url.render_as_string(hide_password=True)

    # -- engine, transactions, errors -------------------------------------------------------
    def _make_engine(self) -> AsyncEngine:
        if self.backend == "sqlite":
            return self._sqlite_engine()
        ms = int(self.timeout * 1000)
        options = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        if self.schema:
            options += f" -c search_path={self.schema}"
        pool_size, max_overflow = self._pool
        return create_async_engine(
            self._url.set(drivername="postgresql+psycopg"),
            connect_args={"connect_timeout": max(2, math.ceil(self.timeout)), "options": options},
            isolation_level="READ COMMITTED",
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=self.timeout,
            pool_pre_ping=True,
        )

    def _sqlite_engine(self) -> AsyncEngine:
        from sqlalchemy import event

        url = self._url.set(drivername="sqlite+aiosqlite")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": self.timeout}}
        if self.memory:
            url = url.set(database=":memory:")
        else:
            Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
            pool_size, max_overflow = self._pool
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=self.timeout)
        engine = create_async_engine(url, **kwargs)
        busy_ms = int(self.timeout * 1000)
        wal = not self.memory

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy emits BEGIN itself (below), sqlite3 must not.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("tokenward_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return StoreUnavailable(
            f"{self.backend} store at {self.safe_url} unavailable ({reason}, limit {self.timeout}s)"
        )

    @contextlib.asynccontextmanager
    async def _tx(
        self, *, write: bool, timeout: float | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction, bounded by ``timeout``; driver trouble becomes StoreUnavailable."""
        if self._engine is None or self._writer is None:
            raise ConfigurationError("the store is not open (await store.open())")
        engine = self._writer if write else self._engine
        serialise = self.backend == "sqlite" and (write or self.memory)
        try:
            async with (
                asyncio.timeout(timeout or self.timeout),
                self._lock if serialise else contextlib.nullcontext(),
                engine.begin() as conn,
            ):
                yield conn
        except IntegrityError:
            raise ConfigurationError(f"{self.backend} store: the record exists") from None
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise self._unavailable(exc) from None
            raise

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._engine is not None:
            return
        self._engine = self._make_engine()
        self._writer = self._engine.execution_options(tokenward_write=True)
        try:
            await self.upgrade()
        except BaseException:
            await self.close()
            raise

    async def upgrade(self) -> str | None:
        """Apply the migrations to head (idempotent, serialised by a lock); the revision."""
        timeout = max(self.timeout, _MIGRATE_TIMEOUT)
        async with self._tx(write=True, timeout=timeout) as conn:
            if self.backend == "postgresql":
                lock_key = f"tokenward:migrate:{self.schema or ''}"
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(lock_key))))
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                if self.schema:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(_upgrade_sync)
            return await conn.run_sync(_current_revision_sync)

    async def current_revision(self) -> str | None:
        async with self._tx(write=False) as conn:
            return await conn.run_sync(_current_revision_sync)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    # -- row mapping -----------------------------------------------------------------------
    @staticmethod
    def _family(row: Row[Any]) -> Family:
        m = row._mapping
        return Family(
            sid=m["sid"],
            sub=m["sub"],
            client_id=m["client_id"],
            scope=m["scope"],
            created_at=m["created_at"],
            last_used_at=m["last_used_at"],
            expires_at=m["expires_at"],
            idle_expires_at=m["idle_expires_at"],
            current_hash=bytes(m["current_hash"]),
            generation=m["generation"],
            user_agent=m["user_agent"],
            ip=m["ip"],
            device=m["device"],
            revoked_at=m["revoked_at"],
            revoked_reason=m["revoked_reason"],
        )

    @staticmethod
    def _record(row: Row[Any]) -> RefreshTokenRecord:
        m = row._mapping
        return RefreshTokenRecord(
            token_hash=bytes(m["token_hash"]),
            sid=m["sid"],
            created_at=m["created_at"],
            parent_hash=_opt_bytes(m["parent_hash"]),
            consumed_at=m["consumed_at"],
            successor_hash=_opt_bytes(m["successor_hash"]),
        )

    @staticmethod
    def _event(row: Row[Any]) -> RevocationEvent:
        m = row._mapping
        return RevocationEvent(
            int(m["seq"]), RevocationKind(m["kind"]), m["value"], m["until"], m["at"]
        )

    # -- refresh tokens and families -------------------------------------------------------
    async def create_family(self, family: Family, token: RefreshTokenRecord) -> None:
        values = {name: getattr(family, name) for name in families.c.keys()}  # noqa: SIM118
        values["current_hash"] = token.token_hash
        async with self._tx(write=True) as conn:
            await conn.execute(insert(families).values(**values))
            await conn.execute(
                insert(refresh_tokens).values(
                    token_hash=token.token_hash,
                    sid=family.sid,
                    parent_hash=token.parent_hash,
                    created_at=token.created_at,
                    consumed_at=token.consumed_at,
                    successor_hash=token.successor_hash,
                )
            )

    async def get_refresh_token(
        self, token_hash: bytes
    ) -> tuple[RefreshTokenRecord, Family] | None:
        async with self._tx(write=False) as conn:
            trow = (
                await conn.execute(
                    select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
                )
            ).first()
            if trow is None:
                return None
            frow = (await conn.execute(select(families).where(families.c.sid == trow.sid))).first()
        if frow is None:
            return None
        return self._record(trow), self._family(frow)

    async def rotate(
        self,
        parent_hash: bytes,
        child: RefreshTokenRecord,
        *,
        now: float,
        grace: float,
        idle_expires_at: float,
        revocation_until: float,
    ) -> RotationResult:
        rt, fam = refresh_tokens.c, families.c
        async with self._tx(write=True) as conn:
            # 1. lock the family row (PostgreSQL; SQLite already holds the write lock).
            owner = select(rt.sid).where(rt.token_hash == parent_hash).scalar_subquery()
            frow = (
                await conn.execute(select(families).where(fam.sid == owner).with_for_update())
            ).first()
            if frow is None:
                return RotationResult(RotationOutcome.NOT_FOUND)
            family = self._family(frow)
            if family.revoked:
                return RotationResult(RotationOutcome.REVOKED, family)
            # 2. read the parent after the lock: a fresh snapshot at READ COMMITTED.
            token = (
                await conn.execute(
                    select(rt.consumed_at, rt.successor_hash).where(rt.token_hash == parent_hash)
                )
            ).one()
            consumed_at, successor = token.consumed_at, _opt_bytes(token.successor_hash)
            # 3. the live leaf: consume it with a compare-and-set, insert the child.
            if consumed_at is None and hmac.compare_digest(family.current_hash, parent_hash):
                won = (
                    await conn.execute(
                        update(refresh_tokens)
                        .where(rt.token_hash == parent_hash, rt.consumed_at.is_(None))
                        .values(consumed_at=now, successor_hash=child.token_hash)
                        .returning(rt.token_hash)
                    )
                ).first()
                if won is not None:
                    await conn.execute(
                        insert(refresh_tokens).values(
                            token_hash=child.token_hash,
                            sid=family.sid,
                            parent_hash=parent_hash,
                            created_at=child.created_at,
                        )
                    )
                    family.current_hash = child.token_hash
                    family.generation += 1
                    family.last_used_at = now
                    family.idle_expires_at = idle_expires_at
                    await conn.execute(
                        update(families)
                        .where(fam.sid == family.sid)
                        .values(
                            current_hash=child.token_hash,
                            generation=family.generation,
                            last_used_at=now,
                            idle_expires_at=idle_expires_at,
                        )
                    )
                    return RotationResult(RotationOutcome.ROTATED, family)
            # 4. the immediate parent inside the grace window: same successor, no change.
            if (
                grace > 0
                and consumed_at is not None
                and successor is not None
                and now - consumed_at <= grace
                and hmac.compare_digest(successor, family.current_hash)
                and hmac.compare_digest(successor, child.token_hash)
            ):
                family.last_used_at = now
                family.idle_expires_at = idle_expires_at
                await conn.execute(
                    update(families)
                    .where(fam.sid == family.sid)
                    .values(last_used_at=now, idle_expires_at=idle_expires_at)
                )
                return RotationResult(RotationOutcome.GRACE, family)
            # 5. anything else is reuse: revoke the family and commit that.
            event = await self._revoke(conn, family, now, REUSE_REASON, revocation_until)
            return RotationResult(RotationOutcome.REUSED, family, event)

    async def _revoke(
        self, conn: AsyncConnection, family: Family, now: float, reason: str, until: float
    ) -> RevocationEvent:
        await conn.execute(
            update(families)
            .where(families.c.sid == family.sid)
            .values(revoked_at=now, revoked_reason=reason)
        )
        family.revoked_at = now
        family.revoked_reason = reason
        (event,) = await self._append(conn, [(RevocationKind.SID, family.sid)], now, until)
        return event

    async def _append(
        self,
        conn: AsyncConnection,
        items: Sequence[tuple[RevocationKind, str]],
        now: float,
        until: float,
    ) -> list[RevocationEvent]:
        """Append events; ``seq`` comes from the counter row (locked until commit)."""
        if not items:
            return []
        last = (
            await conn.execute(
                update(counters)
                .where(counters.c.name == REVOCATION_COUNTER)
                .values(value=counters.c.value + len(items))
                .returning(counters.c.value)
            )
        ).scalar_one()
        first = int(last) - len(items) + 1
        events = [
            RevocationEvent(first + i, RevocationKind(kind), value, float(until), float(now))
            for i, (kind, value) in enumerate(items)
        ]
        await conn.execute(
            insert(revocations),
            [{**e.to_dict(), "kind": e.kind.value} for e in events],
        )
        if self.backend == "postgresql":
            await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(last))))
        return events

    async def get_family(self, sid: str) -> Family | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(families).where(families.c.sid == sid))).first()
        return self._family(row) if row is not None else None

    async def list_families(self, sub: str, *, include_revoked: bool = False) -> list[Family]:
        query = select(families).where(families.c.sub == sub)
        if not include_revoked:
            query = query.where(families.c.revoked_at.is_(None))
        query = query.order_by(families.c.created_at.desc(), families.c.sid.desc())
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [self._family(r) for r in rows]

    async def revoke_family(
        self, sid: str, *, now: float, reason: str, until: float
    ) -> RevocationEvent | None:
        async with self._tx(write=True) as conn:
            row = (
                await conn.execute(select(families).where(families.c.sid == sid).with_for_update())
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            return await self._revoke(conn, self._family(row), now, reason, until)

    async def revoke_subject(self, sub: str, *, now: float, until: float) -> list[RevocationEvent]:
        fam = families.c
        async with self._tx(write=True) as conn:
            sids = list(
                (
                    await conn.execute(
                        select(fam.sid)
                        .where(fam.sub == sub, fam.revoked_at.is_(None))
                        .order_by(fam.sid)
                        .with_for_update()
                    )
                ).scalars()
            )
            if sids:
                await conn.execute(
                    update(families)
                    .where(fam.sid.in_(sids))
                    .values(revoked_at=now, revoked_reason=SUBJECT_REASON)
                )
            items = [(RevocationKind.SID, s) for s in sids] + [(RevocationKind.SUB, sub)]
            return await self._append(conn, items, now, until)

    # -- revocation feed -------------------------------------------------------------------
    async def add_revocation(
        self, kind: RevocationKind, value: str, *, now: float, until: float
    ) -> RevocationEvent:
        async with self._tx(write=True) as conn:
            (event,) = await self._append(conn, [(RevocationKind(kind), value)], now, until)
        return event

    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        query = (
            select(revocations)
            .where(revocations.c.seq > cursor, revocations.c.until > now)
            .order_by(revocations.c.seq)
            .limit(limit)
        )
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [self._event(r) for r in rows]

    async def revocation_cursor(self) -> int:
        async with self._tx(write=False) as conn:
            value = (
                await conn.execute(
                    select(counters.c.value).where(counters.c.name == REVOCATION_COUNTER)
                )
            ).scalar_one()
        return int(value)

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        """PostgreSQL: woken by ``NOTIFY`` (falls back to polling while not listening)."""
        if self.backend != "postgresql":
            return await super().wait_revocations(cursor, now=now, timeout=timeout)
        if self._listener is None:
            conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = PgListener(conninfo, connect_timeout=max(2, math.ceil(self.timeout)))
        listener = self._listener
        listener.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wakeup, listening = listener.wakeup, listener.ready  # before the query
            events = await self.revocations_after(cursor, now=now())
            if events:
                return events
            left = deadline - loop.time()
            if left <= 0:
                return []
            step = min(left, 1.0 if listening else self.poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), step)

    # -- retention -------------------------------------------------------------------------
    async def purge(self, *, now: float, margin: float) -> PurgeCounts:
        cutoff = now - margin
        fam = families.c
        tokens = gone = 0
        while True:  # bounded batches: each is one short transaction
            async with self._tx(write=True) as conn:
                sids = list(
                    (
                        await conn.execute(
                            select(fam.sid)
                            .where(or_(fam.expires_at <= cutoff, fam.idle_expires_at <= cutoff))
                            .limit(_PURGE_BATCH)
                        )
                    ).scalars()
                )
                if sids:
                    res = await conn.execute(
                        delete(refresh_tokens).where(refresh_tokens.c.sid.in_(sids))
                    )
                    tokens += res.rowcount
                    res = await conn.execute(delete(families).where(fam.sid.in_(sids)))
                    gone += res.rowcount
            if len(sids) < _PURGE_BATCH:
                break
        async with self._tx(write=True) as conn:
            res = await conn.execute(delete(revocations).where(revocations.c.until <= now))
            events = res.rowcount
        return PurgeCounts(refresh_tokens=tokens, families=gone, revocations=events)

    # -- keys and secrets ------------------------------------------------------------------
    async def load_keys(self) -> bytes | None:
        async with self._tx(write=False) as conn:
            blob = (await conn.execute(select(keys.c.blob).where(keys.c.id == 1))).scalar()
        return bytes(blob) if blob is not None else None

    async def save_keys(self, blob: bytes) -> None:
        stmt = self._insert(keys).values(id=1, blob=bytes(blob))
        stmt = stmt.on_conflict_do_update(index_elements=[keys.c.id], set_={"blob": bytes(blob)})
        async with self._tx(write=True) as conn:
            await conn.execute(stmt)

    async def get_or_create_secret(self, name: str, factory: Callable[[], bytes]) -> bytes:
        query = select(secrets.c.value).where(secrets.c.name == name)
        async with self._tx(write=False) as conn:
            value = (await conn.execute(query)).scalar()
        if value is not None:
            return bytes(value)
        candidate = bytes(factory())
        async with self._tx(write=True) as conn:  # first writer wins
            await conn.execute(
                self._insert(secrets).values(name=name, value=candidate).on_conflict_do_nothing()
            )
            value = (await conn.execute(query)).scalar_one()
        return bytes(value)

    # -- users and clients -----------------------------------------------------------------
    async def create_user(self, user: User) -> None:
        stmt = self._insert(users).values(**_user_row(user)).on_conflict_do_nothing()
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise ConfigurationError(f"user {user.username!r} exists")

    async def get_user(self, username: str) -> User | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return _user(row) if row is not None else None

    async def update_user(self, user: User) -> None:
        values = _user_row(user)
        del values["username"]
        stmt = update(users).where(users.c.username == user.username).values(**values)
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise ConfigurationError(f"unknown user {user.username!r}")

    async def list_users(self) -> list[User]:
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(select(users).order_by(users.c.username))).all()
        return [_user(r) for r in rows]

    async def create_client(self, client: Client) -> None:
        stmt = self._insert(clients).values(**_client_row(client)).on_conflict_do_nothing()
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise ConfigurationError(f"client {client.client_id!r} exists")

    async def get_client(self, client_id: str) -> Client | None:
        query = select(clients).where(clients.c.client_id == client_id)
        async with self._tx(write=False) as conn:
            row = (await conn.execute(query)).first()
        return _client(row) if row is not None else None

    async def list_clients(self) -> list[Client]:
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(select(clients).order_by(clients.c.client_id))).all()
        return [_client(r) for r in rows]

    # -- health ----------------------------------------------------------------------------
    async def ping(self) -> None:
        async with self._tx(write=False) as conn:
            await conn.execute(select(1))


def _opt_bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


def _user_row(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "password_hash": user.password_hash,
        "created_at": user.created_at,
        "is_admin": bool(user.is_admin),
        "disabled": bool(user.disabled),
        "attributes": orjson.dumps(user.attributes).decode(),
    }


def _user(row: Row[Any]) -> User:
    m = row._mapping
    return User(
        username=m["username"],
        password_hash=m["password_hash"],
        created_at=m["created_at"],
        is_admin=bool(m["is_admin"]),
        disabled=bool(m["disabled"]),
        attributes=orjson.loads(m["attributes"]),
    )


def _client_row(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "created_at": client.created_at,
        "secret_hash": client.secret_hash,
        "grants": " ".join(client.grants),
        "scopes": " ".join(client.scopes),
        "name": client.name,
    }


def _client(row: Row[Any]) -> Client:
    m = row._mapping
    return Client(
        client_id=m["client_id"],
        created_at=m["created_at"],
        secret_hash=m["secret_hash"],
        grants=tuple(m["grants"].split()),
        scopes=tuple(m["scopes"].split()),
        name=m["name"],
    )

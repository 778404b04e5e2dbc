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

Options: ``timeout`` (default 2 s; bounds every call, also in the driver), ``schema``
(PostgreSQL; or ``?schema=``), ``pool_size``, ``max_overflow``, ``poll_interval``,
``pool_pre_ping`` (default off: lookups retry a dead connection once, see :meth:`SQLStore._read`).
Driver errors and timeouts become :class:`~tokenward.errors.StoreUnavailable` (backend named,
password masked). Lookups are one statement each, without BEGIN/COMMIT.
:meth:`SQLStore.open` migrates to head under a lock. See ``docs/stores.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import Executable, Row, delete, func, insert, or_, select, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...errors import AlreadyExists, ConfigurationError, StoreUnavailable
from ..base import (
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
    decide_rotation,
)
from . import hot
from .engine import (
    MIGRATIONS_DIR,
    UNAVAILABLE_ERRORS,
    alembic_config,
    current_revision_sync,
    hard_deadline,
    head_revision,
    postgres_engine,
    sqlite_engine,
    upgrade_sync,
)
from .grants import SQLGrantRecordsMixin
from .lane import Lane
from .listener import MAX_PAYLOAD, NOTIFY_CHANNEL, PgListener
from .records import SQLRecordsMixin
from .schema import (
    REVOCATION_COUNTER,
    counters,
    dpop_jtis,
    event_from_row,
    families,
    family_from_row,
    opt_bytes,
    rate_events,
    record_from_row,
    refresh_tokens,
    revocations,
    token_from_row,
)

__all__ = ["MIGRATIONS_DIR", "SQLStore", "alembic_config", "head_revision"]

REUSE_REASON = "refresh_token_reuse"
SUBJECT_REASON = "subject_revoked"
_PURGE_BATCH = 500
_MIGRATE_TIMEOUT = 60.0
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# PostgreSQL: append events and NOTIFY in one statement (one round trip; atomic on its own)
_PG_APPEND = text(
    """
WITH c AS (
    UPDATE counters SET value = value + :n WHERE name = :counter RETURNING value
), ins AS (
    INSERT INTO revocations (seq, kind, value, until, at)
    SELECT c.value - :n + v.ord, v.kind, v.value, :until, :at
    FROM c, unnest(CAST(:kinds AS text[]), CAST(:vals AS text[]))
        WITH ORDINALITY AS v(kind, value, ord)
    RETURNING seq, kind, value, until, at
), p AS (
    SELECT max(seq) AS last, json_build_object(
        's', CAST(:schema AS text), 'n', max(seq),
        'e', json_agg(json_build_array(seq, kind, value, until, at) ORDER BY seq)
    )::text AS body
    FROM ins
)
SELECT last, pg_notify(:channel, CASE WHEN octet_length(body) <= :max THEN body
    ELSE json_build_object('s', CAST(:schema AS text), 'n', last)::text END)
FROM p
"""
)


class _StaleConnection(Exception):
    """A pooled connection was found dead (internal: :meth:`SQLStore._read` retries)."""


class SQLStore(SQLGrantRecordsMixin, SQLRecordsMixin, Store):
    """The SQL backend. ``SQLStore("sqlite:///var/tokenward.db")``; open before use."""

    schemes = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+psycopg")

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        schema: str | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
        poll_interval: float = 0.2,
        pool_pre_ping: bool = False,
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
        self._pre_ping = bool(pool_pre_ping)
        # single-statement lookups without BEGIN/COMMIT; ``False`` restores the former
        # transaction-per-lookup path (kept for bench/lifecycle.py --compare)
        self.single_reads = True
        # SQLite file: the refresh path's lookups and rotations on dedicated connection
        # threads (.lane, .hot); ``False`` restores the SQLAlchemy/aiosqlite path (kept for
        # bench/refresh_inproc.py --compare)
        self.lanes = True
        self._rotate_lane: Lane | None = None
        self._read_lane: Lane | None = None
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
        self._sqlite_path = (
            os.path.expanduser(str(parsed.database))
            if self.backend == "sqlite" and not self.memory
            else None
        )
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None  # PostgreSQL single statements
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
            return sqlite_engine(
                self._url, timeout=self.timeout, memory=self.memory, pool=self._pool
            )
        return postgres_engine(
            self._url,
            timeout=self.timeout,
            schema=self.schema,
            pool=self._pool,
            pre_ping=self._pre_ping,
        )

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        reason = "timed out" if isinstance(exc, TimeoutError) else self._driver_reason(exc)
        return StoreUnavailable(
            f"{self.backend} store at {self.safe_url} unavailable ({reason}, limit {self.timeout}s)"
        )

    def _driver_reason(self, exc: BaseException) -> str:
        """The driver's own reason (``database "x" does not exist``, ``Connection refused``),
        one line, with the URL's password masked; the exception's class when there is none."""
        orig = getattr(exc, "orig", None) or exc
        text = " ".join(str(orig).split())
        for marker in ("FATAL:", "ERROR:", "failed:"):
            if marker in text:
                text = text.rsplit(marker, 1)[1].strip()
        text = text.split(" Is the server running", 1)[0].strip()
        password = self._url.password
        if password:
            text = text.replace(password, "***")
        if not text:
            return type(exc).__name__
        return text[:200]

    @contextlib.asynccontextmanager
    async def _tx(
        self,
        *,
        write: bool,
        timeout: float | None = None,
        single: bool = False,
        stale: bool = False,
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction, bounded by ``timeout``; driver trouble becomes StoreUnavailable.

        ``single``: the block runs exactly one statement, which is then its own atomic
        transaction and snapshot: autocommit on PostgreSQL, no ``BEGIN`` on SQLite (reads
        only: a SQLite write keeps ``BEGIN IMMEDIATE``). That saves the BEGIN/COMMIT round
        trips (SQLite: hops to its thread) on the lookups of every refresh and on the
        revocation feed. ``stale``: a connection the driver found dead raises
        :class:`_StaleConnection` instead of StoreUnavailable (for :meth:`_read` to retry)."""
        if self._engine is None or self._writer is None or self._autocommit is None:
            raise ConfigurationError("the store is not open (await store.open())")
        engine = self._writer if write else self._engine
        serialise = self.backend == "sqlite" and (write or self.memory)
        autocommit = single and self.backend == "postgresql"
        if single and not write and self.backend == "sqlite":
            engine = self._autocommit  # tokenward_autocommit: the begin hook emits no BEGIN
        try:
            async with (
                asyncio.timeout(timeout or self.timeout),
                hard_deadline(timeout or self.timeout),
                self._lock if serialise else contextlib.nullcontext(),
                self._autocommit.connect()
                if autocommit or engine is self._autocommit
                else engine.begin() as conn,
            ):
                yield conn
        except IntegrityError:
            raise AlreadyExists(f"{self.backend} store: the record exists") from None
        except DBAPIError as exc:
            if stale and exc.connection_invalidated:
                raise _StaleConnection from None
            if exc.connection_invalidated or isinstance(exc, UNAVAILABLE_ERRORS):
                raise self._unavailable(exc) from None
            raise
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def _read(self, stmt: Executable) -> Sequence[Row[Any]]:
        """The rows of one read-only statement, run on its own (see ``_tx(single=True)``).

        There is no pool pre-ping (a round trip on every checkout): a pooled connection that
        turns out dead (server restarted, idle connection dropped) fails on first use, which
        invalidates the pool's older connections; the read — idempotent — is then retried
        once on a fresh connection within what is left of ``timeout``. Writes are never
        retried (a write may have committed): they fail closed with StoreUnavailable."""
        if not self.single_reads:  # the former path, kept for bench/lifecycle.py --compare
            async with self._tx(write=False) as conn:
                return (await conn.execute(stmt)).all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            async with self._tx(write=False, single=True, stale=True) as conn:
                return (await conn.execute(stmt)).all()
        except _StaleConnection:
            left = deadline - loop.time()
            if left <= 0:
                raise self._unavailable(TimeoutError()) from None
        async with self._tx(write=False, single=True, timeout=left) as conn:
            return (await conn.execute(stmt)).all()

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._engine is not None:
            return
        self._engine = self._make_engine()
        self._writer = self._engine.execution_options(tokenward_write=True)
        self._autocommit = self._engine.execution_options(
            **(
                {"isolation_level": "AUTOCOMMIT"}
                if self.backend == "postgresql"
                else {"tokenward_autocommit": True}
            )
        )
        try:
            await self.upgrade()
        except BaseException:
            await self.close()
            raise
        path = self._sqlite_path
        if path is not None:
            # rotations at NORMAL (durable across a process crash; a revoking transaction
            # switches to FULL), lookups on their own connection
            self._rotate_lane = Lane(
                path, timeout=self.timeout, synchronous="NORMAL", name="tokenward-sqlite-rotate"
            )
            self._read_lane = Lane(
                path, timeout=self.timeout, synchronous="FULL", name="tokenward-sqlite-read"
            )

    def _lane(self, which: str) -> Lane | None:
        if not self.lanes:
            return None
        return self._rotate_lane if which == "rotate" else self._read_lane

    async def upgrade(self) -> str | None:
        """Apply the migrations to head (idempotent, serialised by a lock); the revision.

        Fast path: a plain read of the version table; the write lock is taken (and Alembic
        run) only when the schema is not at head, so opening a migrated store is cheap and
        several processes opening it at once do not queue behind each other.
        """
        head = head_revision()
        if await self.current_revision() == head:
            return head
        timeout = max(self.timeout, _MIGRATE_TIMEOUT)
        async with self._tx(write=True, timeout=timeout) as conn:
            if self.backend == "postgresql":
                lock_key = f"tokenward:migrate:{self.schema or ''}"
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(lock_key))))
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                if self.schema:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(upgrade_sync)
            return await conn.run_sync(current_revision_sync)

    async def current_revision(self) -> str | None:
        async with self._tx(write=False) as conn:
            return await conn.run_sync(current_revision_sync)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        lanes = [lane for lane in (self._rotate_lane, self._read_lane) if lane is not None]
        self._rotate_lane = self._read_lane = None
        for lane in lanes:
            await asyncio.to_thread(lane.close)
        engine, self._engine, self._writer, self._autocommit = self._engine, None, None, None
        if engine is not None:
            await engine.dispose()

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
        self, token_hash: bytes, *, sid: str | None = None
    ) -> tuple[RefreshTokenRecord, Family] | None:
        lane = self._lane("read")
        if lane is not None and self.single_reads:
            found = await lane.read(hot.get_refresh_token, bytes(token_hash))
        else:
            found = await self._get_refresh_token(token_hash)
        if found is None or (sid is not None and found[1].sid != sid):
            return None
        return found

    async def _get_refresh_token(
        self, token_hash: bytes
    ) -> tuple[RefreshTokenRecord, Family] | None:
        if not self.single_reads:
            return await self._get_refresh_token_two_reads(token_hash)
        rt = refresh_tokens.c
        query = select(
            families,
            rt.parent_hash.label("t_parent_hash"),
            rt.created_at.label("t_created_at"),
            rt.consumed_at.label("t_consumed_at"),
            rt.successor_hash.label("t_successor_hash"),
        ).join_from(families, refresh_tokens, families.c.sid == rt.sid)
        query = query.where(rt.token_hash == token_hash)
        rows = await self._read(query)  # one joined statement
        if not rows:
            return None
        row = rows[0]
        return token_from_row(bytes(token_hash), row), family_from_row(row)

    async def _get_refresh_token_two_reads(
        self, token_hash: bytes
    ) -> tuple[RefreshTokenRecord, Family] | None:
        """The former path (token, then family, in one transaction): for comparison."""
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
        return record_from_row(trow), family_from_row(frow)

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
        lane = self._lane("rotate")
        if lane is not None:
            args = (bytes(parent_hash), child, now, grace, idle_expires_at, revocation_until)
            return await lane.run(hot.rotate, *args)
        rt, fam = refresh_tokens.c, families.c
        async with self._tx(write=True) as conn:
            if self.backend == "sqlite" and self.single_reads:
                # 1+2. SQLite: BEGIN IMMEDIATE already holds the database write lock, so one
                # joined read sees the newest family and parent rows (no writer can interleave).
                row = (
                    await conn.execute(
                        select(
                            families,
                            rt.consumed_at.label("t_consumed_at"),
                            rt.successor_hash.label("t_successor_hash"),
                        )
                        .join_from(families, refresh_tokens, fam.sid == rt.sid)
                        .where(rt.token_hash == parent_hash)
                    )
                ).first()
                if row is None:
                    return RotationResult(RotationOutcome.NOT_FOUND)
                family = family_from_row(row)
                if family.revoked:
                    return RotationResult(RotationOutcome.REVOKED, family)
                consumed_at = row.t_consumed_at
                successor = opt_bytes(row.t_successor_hash)
            else:
                # 1. lock the family row (PostgreSQL; SQLite already holds the write lock).
                owner = select(rt.sid).where(rt.token_hash == parent_hash).scalar_subquery()
                frow = (
                    await conn.execute(select(families).where(fam.sid == owner).with_for_update())
                ).first()
                if frow is None:
                    return RotationResult(RotationOutcome.NOT_FOUND)
                family = family_from_row(frow)
                if family.revoked:
                    return RotationResult(RotationOutcome.REVOKED, family)
                # 2. read the parent after the lock: a fresh snapshot at READ COMMITTED.
                token = (
                    await conn.execute(
                        select(rt.consumed_at, rt.successor_hash).where(
                            rt.token_hash == parent_hash
                        )
                    )
                ).one()
                consumed_at, successor = token.consumed_at, opt_bytes(token.successor_hash)
            outcome = decide_rotation(
                family_revoked=family.revoked,
                current_hash=family.current_hash,
                parent_hash=parent_hash,
                consumed_at=consumed_at,
                successor_hash=successor,
                child_hash=child.token_hash,
                now=now,
                grace=grace,
            )
            # 3. the live leaf: consume it with a compare-and-set, insert the child (a lost
            # compare-and-set cannot happen under the lock; it would count as reuse).
            if outcome is RotationOutcome.ROTATED:
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
            if outcome is RotationOutcome.GRACE:
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
        if self.backend == "postgresql":
            return await self._append_pg(conn, items, now, until)
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
        return events

    async def _append_pg(
        self,
        conn: AsyncConnection,
        items: Sequence[tuple[RevocationKind, str]],
        now: float,
        until: float,
    ) -> list[RevocationEvent]:
        """PostgreSQL: counter, insert and ``NOTIFY`` (payload built by the server, same shape
        as :func:`~tokenward.store.sql.listener.notify_payload`) in one statement."""
        last = (
            await conn.execute(
                _PG_APPEND,
                {
                    "n": len(items),
                    "counter": REVOCATION_COUNTER,
                    "kinds": [RevocationKind(k).value for k, _ in items],
                    "vals": [v for _, v in items],
                    "until": float(until),
                    "at": float(now),
                    "schema": self.schema or "",
                    "channel": NOTIFY_CHANNEL,
                    "max": MAX_PAYLOAD,
                },
            )
        ).scalar_one()
        first = int(last) - len(items) + 1
        return [
            RevocationEvent(first + i, RevocationKind(kind), value, float(until), float(now))
            for i, (kind, value) in enumerate(items)
        ]

    async def get_user(self, username: str) -> User | None:
        lane = self._lane("read")
        if lane is None:
            return await super().get_user(username)
        return await lane.read(hot.get_user, username)

    async def get_client(self, client_id: str) -> Client | None:
        lane = self._lane("read")
        if lane is None:
            return await super().get_client(client_id)
        return await lane.read(hot.get_client, client_id)

    async def get_family(self, sid: str) -> Family | None:
        rows = await self._read(select(families).where(families.c.sid == sid))
        return family_from_row(rows[0]) if rows else None

    async def list_families(self, sub: str, *, include_revoked: bool = False) -> list[Family]:
        query = select(families).where(families.c.sub == sub)
        if not include_revoked:
            query = query.where(families.c.revoked_at.is_(None))
        query = query.order_by(families.c.created_at.desc(), families.c.sid.desc())
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [family_from_row(r) for r in rows]

    async def revoke_family(
        self, sid: str, *, now: float, reason: str, until: float
    ) -> RevocationEvent | None:
        async with self._tx(write=True) as conn:
            row = (
                await conn.execute(select(families).where(families.c.sid == sid).with_for_update())
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            return await self._revoke(conn, family_from_row(row), now, reason, until)

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
        async with self._tx(write=True, single=True) as conn:  # PostgreSQL: one statement
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
        return [event_from_row(r) for r in await self._read(query)]

    async def revocation_cursor(self) -> int:
        (row,) = await self._read(
            select(counters.c.value).where(counters.c.name == REVOCATION_COUNTER)
        )
        return int(row[0])

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        """PostgreSQL: woken by ``NOTIFY`` (falls back to polling while not listening)."""
        if self.backend != "postgresql":
            return await super().wait_revocations(cursor, now=now, timeout=timeout)
        if self._listener is None:
            conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = PgListener(
                conninfo, schema=self.schema, connect_timeout=max(2, math.ceil(self.timeout))
            )
        return await self._listener.wait(
            cursor,
            lambda after: self.revocations_after(after, now=now()),
            now=now,
            timeout=timeout,
            poll_interval=self.poll_interval,
        )

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
            await conn.execute(delete(dpop_jtis).where(dpop_jtis.c.until <= now))
            await conn.execute(delete(rate_events).where(rate_events.c.until <= now))
        return PurgeCounts(refresh_tokens=tokens, families=gone, revocations=events)

    # -- health ----------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._read(select(1))

"""The SQL store's lookups: one statement each, no BEGIN/COMMIT, no pool pre-ping.

* the joined ``get_refresh_token`` answers exactly what the former two-SELECT transaction
  answered, through a rotation, a grace replay and a reuse;
* SQLite: a lookup sends no ``BEGIN``; the rotate transaction still sends ``BEGIN IMMEDIATE``;
* PostgreSQL without pre-ping: after the connections in the pool were reset (the server
  restarted), a lookup is retried once on a fresh connection and succeeds; a write fails closed
  (``StoreUnavailable``, never another error) or succeeds, and the next one succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from support.env import service_missing
from support.faultproxy import FaultProxy
from support.stores import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_URL,
    drop_postgres_schema,
    postgres_problem,
    rerouted,
)
from tokenward.errors import StoreUnavailable
from tokenward.store import Client, Family, RefreshTokenRecord, RotationOutcome
from tokenward.store.sql import SQLStore

NOW = 1_800_000_000.0
DAY = 86_400.0
UNTIL = NOW + DAY


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def family(sid: str) -> Family:
    return Family(
        sid=sid,
        sub="alice",
        client_id="web",
        scope="read",
        created_at=NOW,
        last_used_at=NOW,
        expires_at=NOW + 30 * DAY,
        idle_expires_at=NOW + 14 * DAY,
        current_hash=h(f"{sid}/0"),
    )


async def rotate(store: SQLStore, parent: bytes, child: bytes, now: float) -> RotationOutcome:
    result = await store.rotate(
        parent,
        RefreshTokenRecord(child, "f1", now, parent_hash=parent),
        now=now,
        grace=10.0,
        idle_expires_at=now + 14 * DAY,
        revocation_until=UNTIL,
    )
    return result.outcome


async def both_paths(store: SQLStore, token_hash: bytes) -> Any:
    store.single_reads = True
    new = await store.get_refresh_token(token_hash)
    store.single_reads = False
    try:
        old = await store.get_refresh_token(token_hash)
    finally:
        store.single_reads = True
    assert new == old
    return new


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    store = SQLStore(f"sqlite:///{tmp_path / 'reads.db'}", timeout=10.0)
    await store.open()
    yield store
    await store.close()


async def test_joined_lookup_matches_the_two_select_path(sqlite_store: SQLStore) -> None:
    store = sqlite_store
    assert await both_paths(store, h("nope")) is None
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    record, fam = await both_paths(store, h("f1/0"))
    assert (record.token_hash, record.sid, record.consumed_at) == (h("f1/0"), "f1", None)
    assert fam.current_hash == h("f1/0") and fam.generation == 0

    assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED
    parent, fam = await both_paths(store, h("f1/0"))
    assert parent.consumed_at == NOW + 1 and parent.successor_hash == h("f1/1")
    assert fam.current_hash == h("f1/1") and fam.generation == 1
    child, _ = await both_paths(store, h("f1/1"))
    assert child.parent_hash == h("f1/0") and child.successor_hash is None

    assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 2) is RotationOutcome.GRACE
    assert await rotate(store, h("f1/0"), h("f1/x"), NOW + 3) is RotationOutcome.REUSED
    _, fam = await both_paths(store, h("f1/1"))
    assert fam.revoked and fam.revoked_reason == "refresh_token_reuse"


async def test_sqlite_lookups_send_no_begin_rotate_still_begins_immediate(
    sqlite_store: SQLStore,
) -> None:
    store = sqlite_store
    store.lanes = False  # the SQLAlchemy path (the hot path's own connections: below)
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    await store.create_client(Client(client_id="web", created_at=NOW))
    sent: list[str] = []
    assert store._engine is not None

    @event.listens_for(store._engine.sync_engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        sent.append(
            statement.split()[0].upper() + (" IMMEDIATE" if "IMMEDIATE" in statement else "")
        )

    assert await store.get_refresh_token(h("f1/0")) is not None
    assert (await store.get_client("web")) is not None
    assert await store.get_family("f1") is not None
    assert sent == ["SELECT", "SELECT", "SELECT"]
    sent.clear()
    assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED
    assert sent[0] == "BEGIN IMMEDIATE"


async def test_sqlite_hot_path_statements_and_durability_levels(sqlite_store: SQLStore) -> None:
    """The refresh path's own connections: a lookup is one SELECT (no BEGIN); a rotation is
    BEGIN IMMEDIATE, one SELECT, three writes, COMMIT at synchronous NORMAL; the revoking
    transaction of a reuse commits at FULL; the connection is back at NORMAL after it."""
    store = sqlite_store
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    await store.create_client(Client(client_id="web", created_at=NOW))
    rotate_lane, read_lane = store._rotate_lane, store._read_lane
    assert rotate_lane is not None and read_lane is not None
    sent: list[tuple[str, int | None]] = []

    def level_of(lane: Any) -> int | None:
        # the connection running the statement: the lane thread's, or the one used on the
        # event loop (the hook runs where the statement runs)
        on_thread = threading.current_thread().name.startswith("tokenward-sqlite")
        conn = lane._conn if on_thread else lane._inline
        return None if conn is None else int(conn.execute("PRAGMA synchronous").fetchone()[0])

    def seen(lane: Any) -> Any:
        def hook(sql: str) -> None:
            word = " ".join(sql.split()[:2]) if sql.startswith("BEGIN") else sql.split()[0]
            sent.append((word.upper(), level_of(lane) if lane is rotate_lane else None))

        return hook

    rotate_lane.on_statement, read_lane.on_statement = seen(rotate_lane), seen(read_lane)
    try:
        assert await store.get_refresh_token(h("f1/0")) is not None
        assert (await store.get_client("web")) is not None
        assert (await store.get_user("nobody")) is None
        assert [w for w, _ in sent] == ["SELECT", "SELECT", "SELECT"]
        sent.clear()
        assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED
        assert sent == [
            ("BEGIN IMMEDIATE", 1),
            ("SELECT", 1),
            ("UPDATE", 1),
            ("INSERT", 1),
            ("UPDATE", 1),
            ("COMMIT", 1),
        ]
        sent.clear()
        assert await rotate(store, h("f1/0"), h("f1/x"), NOW + 60) is RotationOutcome.REUSED
        # decided at NORMAL and rolled back; taken again and committed at FULL (2)
        assert sent[:3] == [("BEGIN IMMEDIATE", 1), ("SELECT", 1), ("ROLLBACK", 1)]
        assert sent[3:] == [
            ("BEGIN IMMEDIATE", 2),
            ("SELECT", 2),
            ("UPDATE", 2),
            ("UPDATE", 2),
            ("INSERT", 2),
            ("COMMIT", 2),
        ]
    finally:
        rotate_lane.on_statement = read_lane.on_statement = None
    sent.clear()
    rotate_lane.on_statement = seen(rotate_lane)
    try:
        assert await rotate(store, h("f1/1"), h("f1/2"), NOW + 61) is RotationOutcome.REVOKED
        assert sent[0] == ("BEGIN IMMEDIATE", 1)  # back at NORMAL
    finally:
        rotate_lane.on_statement = None
    _, fam = await store.get_refresh_token(h("f1/1")) or (None, None)
    assert fam is not None and fam.revoked
    events = await store.revocations_after(0, now=NOW)
    assert [e.value for e in events] == ["f1"]


async def test_sqlite_single_read_sees_committed_rotation_from_another_store(
    sqlite_store: SQLStore, tmp_path: Path
) -> None:
    other = SQLStore(f"sqlite:///{tmp_path / 'reads.db'}", timeout=10.0)
    await other.open()
    try:
        await sqlite_store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
        assert await sqlite_store.get_refresh_token(h("f1/0")) is not None  # pooled connection
        assert await rotate(other, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED
        found = await sqlite_store.get_refresh_token(h("f1/0"))
        assert found is not None
        assert found[0].consumed_at == NOW + 1  # no stale snapshot left open on the connection
        assert found[1].current_hash == h("f1/1")
    finally:
        await other.close()


@pytest.fixture
async def pg_behind_proxy() -> AsyncIterator[tuple[SQLStore, FaultProxy]]:
    if (problem := postgres_problem()) is not None:
        service_missing(problem)
    schema = f"tw_reads_{uuid.uuid4().hex[:12]}"
    proxy = FaultProxy(POSTGRES_PORT, target_host=POSTGRES_HOST).start()
    store = SQLStore(
        rerouted(POSTGRES_URL, proxy.port),
        schema=schema,
        timeout=5.0,
        pool_size=3,
        max_overflow=0,
    )
    try:
        await store.open()
        yield store, proxy
    finally:
        proxy.restore()
        await store.close()
        proxy.stop()
        await asyncio.to_thread(drop_postgres_schema, schema)


async def _fill_pool(store: SQLStore) -> None:
    async def hold() -> None:
        async with store._tx(write=False) as conn:
            await conn.exec_driver_sql("SELECT pg_sleep(0.05)")

    await asyncio.gather(hold(), hold(), hold())


async def test_postgres_lookup_after_reset_connections_is_retried(
    pg_behind_proxy: tuple[SQLStore, FaultProxy],
) -> None:
    store, proxy = pg_behind_proxy
    await store.create_client(Client(client_id="web", created_at=NOW))
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    await _fill_pool(store)
    proxy.cut()  # every pooled connection is reset: the server "restarted"
    proxy.restore()
    client = await store.get_client("web")  # a dead pooled connection, then a fresh one
    assert client is not None and client.client_id == "web"
    assert await store.get_refresh_token(h("f1/0")) is not None
    assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED


async def test_postgres_write_on_reset_connection_fails_closed_then_recovers(
    pg_behind_proxy: tuple[SQLStore, FaultProxy],
) -> None:
    store, proxy = pg_behind_proxy
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    await _fill_pool(store)
    proxy.cut()
    proxy.restore()
    try:
        outcome = await rotate(store, h("f1/0"), h("f1/1"), NOW + 1)
    except StoreUnavailable:  # the dead connection was the first to be used: fail closed
        outcome = await rotate(store, h("f1/0"), h("f1/1"), NOW + 1)
    assert outcome is RotationOutcome.ROTATED
    assert await rotate(store, h("f1/1"), h("f1/2"), NOW + 2) is RotationOutcome.ROTATED


async def test_postgres_lookup_while_refused_is_store_unavailable(
    pg_behind_proxy: tuple[SQLStore, FaultProxy],
) -> None:
    store, proxy = pg_behind_proxy
    await _fill_pool(store)
    proxy.cut()  # reset and refuse: the retry meets the refusal and fails closed
    with pytest.raises(StoreUnavailable):
        await store.get_client("web")
    proxy.restore()
    assert await store.get_client("web") is None


async def test_sqlite_hot_lookups_run_on_the_loop_and_fall_back_to_the_thread(
    sqlite_store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hot lookup runs on the calling thread when its connection is free and the database
    answers at once; a busy or failing inline connection (or one in use) sends it to the
    lane's thread, with the same answer."""
    import sqlite3
    import threading

    store = sqlite_store
    await store.create_client(Client(client_id="web", created_at=NOW))
    lane = store._read_lane
    assert lane is not None
    threads: list[str] = []
    lane.on_statement = lambda _sql: threads.append(threading.current_thread().name)
    try:
        assert (await store.get_client("web")) is not None
        assert threads == [threading.current_thread().name]  # on the event loop's thread

        threads.clear()
        with lane._inline_lock:  # the inline connection in use elsewhere
            assert (await store.get_client("web")) is not None
        assert threads and threads[0].startswith("tokenward-sqlite-read")

        def busy(_self: object) -> sqlite3.Connection:
            raise sqlite3.OperationalError("database is locked")

        threads.clear()
        monkeypatch.setattr(type(lane), "_inline_connection", busy)
        client = await store.get_client("web")
        assert client is not None and client.client_id == "web"
        assert threads and threads[0].startswith("tokenward-sqlite-read")
    finally:
        lane.on_statement = None


async def test_sqlite_rotation_never_waits_on_the_event_loop(
    sqlite_store: SQLStore, tmp_path: Path
) -> None:
    """While another connection holds the write lock, a rotation does not wait on the event
    loop (other tasks keep running); it waits on the rotation thread and completes when
    the lock is released."""
    import sqlite3

    store = sqlite_store
    await store.create_family(family("f1"), RefreshTokenRecord(h("f1/0"), "f1", NOW))
    other = sqlite3.connect(tmp_path / "reads.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def release() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    tick, rel = asyncio.create_task(ticker()), asyncio.create_task(release())
    try:
        assert await rotate(store, h("f1/0"), h("f1/1"), NOW + 1) is RotationOutcome.ROTATED
    finally:
        tick.cancel()
        await rel
        other.close()
    assert ticks >= 1  # the loop ran while the rotation waited for the lock
    found = await store.get_refresh_token(h("f1/1"))
    assert found is not None and found[1].generation == 1

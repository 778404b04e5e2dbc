"""SQL-store specifics: SQLite across processes, migrations, ``tokenward db``, fail closed,
PostgreSQL NOTIFY. The Store contract itself is in test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import socket
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from support.env import service_missing
from support.sql_worker import open_and_rotate
from support.stores import POSTGRES_URL, drop_postgres_schema, postgres_problem
from support.wait import HANG
from tokenward.clock import FrozenClock
from tokenward.errors import StoreUnavailable
from tokenward.store import (
    Family,
    RefreshTokenRecord,
    RevocationEvent,
    RevocationKind,
    RotationOutcome,
)
from tokenward.store.sql import SQLStore, head_revision

NOW = 1_800_000_000.0
DAY = 86_400.0
PROCESSES = 6


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def family(sid: str, *, expires_at: float = NOW + 30 * DAY) -> Family:
    return Family(
        sid=sid,
        sub="alice",
        client_id="web",
        scope="read",
        created_at=NOW,
        last_used_at=NOW,
        expires_at=expires_at,
        idle_expires_at=min(expires_at, NOW + 14 * DAY),
        current_hash=h(f"{sid}/0"),
    )


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    if (problem := postgres_problem()) is not None:
        service_missing(problem)
    schema = f"tw_test_{uuid.uuid4().hex[:12]}"
    yield schema
    await asyncio.to_thread(drop_postgres_schema, schema)


# -- SQLite across processes ---------------------------------------------------------------
def _run_processes(url: str, n: int) -> list[str]:
    # fork (from a worker thread, no store open): children start in milliseconds; each one
    # builds its own engine and connections after the fork
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=open_and_rotate, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return outcomes


async def test_sqlite_processes_race_on_a_fresh_file_one_successor(tmp_path: Path) -> None:
    """N processes open the same (not yet migrated) file at once, then all present the same
    parent: migrations run once, exactly one rotates, the others get the grace replay."""
    # 1. race on a fresh file: every process migrates it at once (the parent is unknown)
    fresh = tmp_path / "fresh" / "tokenward.db"
    outcomes = await asyncio.to_thread(_run_processes, f"sqlite:///{fresh}", PROCESSES)
    assert outcomes == ["not_found"] * PROCESSES  # all opened and migrated the same file
    with sqlite3.connect(fresh) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]

    # 2. race on one parent
    db = tmp_path / "shared" / "tokenward.db"
    url = f"sqlite:///{db}"
    async with SQLStore(url) as store:
        await store.create_family(family("s1"), RefreshTokenRecord(h("s1/0"), "s1", NOW))
    outcomes = await asyncio.to_thread(_run_processes, url, PROCESSES)
    assert Counter(outcomes) == {"rotated": 1, "grace": PROCESSES - 1}, outcomes
    with sqlite3.connect(db) as conn:
        children = conn.execute(
            "SELECT token_hash FROM refresh_tokens WHERE parent_hash = ?", (h("s1/0"),)
        ).fetchall()
        assert children == [(h("s1/1"),)]
        assert conn.execute("SELECT generation FROM families").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- migrations ----------------------------------------------------------------------------
async def test_migrations_idempotent_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'dir' / 'tw.db'}"  # parent dirs are created
    async with SQLStore(url) as store:
        assert await store.current_revision() == head_revision() is not None
        await store.create_family(family("s1"), RefreshTokenRecord(h("s1/0"), "s1", NOW))
        assert await store.upgrade() == head_revision()  # again: no-op, data kept
    async with SQLStore(url) as store:
        assert await store.get_family("s1") is not None
    with sqlite3.connect(tmp_path / "deep" / "dir" / "tw.db") as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


async def test_memory_sqlite_works(tmp_path: Path) -> None:
    async with SQLStore("sqlite:///:memory:") as store:
        await store.create_family(family("s1"), RefreshTokenRecord(h("s1/0"), "s1", NOW))
        results = await asyncio.gather(
            *(
                store.rotate(
                    h("s1/0"),
                    RefreshTokenRecord(h("s1/1"), "s1", NOW),
                    now=NOW,
                    grace=10,
                    idle_expires_at=NOW + DAY,
                    revocation_until=NOW + 900,
                )
                for _ in range(20)
            )
        )
        assert Counter(r.outcome for r in results) == {
            RotationOutcome.ROTATED: 1,
            RotationOutcome.GRACE: 19,
        }


async def test_migrations_concurrent_postgres(pg_schema: str) -> None:
    stores = [SQLStore(POSTGRES_URL, schema=pg_schema) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))  # advisory lock serialises them
        assert [await s.current_revision() for s in stores] == [head_revision()] * 4
        assert await stores[0].upgrade() == head_revision()
    finally:
        for s in stores:
            await s.close()


async def test_schema_option_from_url(pg_schema: str) -> None:
    async with SQLStore(f"{POSTGRES_URL}?schema={pg_schema}") as store:
        assert store.schema == pg_schema
        await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 5)
    async with SQLStore(POSTGRES_URL, schema=pg_schema) as same:
        assert await same.revocation_cursor() == 1


# -- tokenward db --------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    from tokenward.cli import _common

    monkeypatch.setattr(_common, "CLOCK", FrozenClock(NOW + 40 * DAY))
    yield CliRunner()


def test_cli_db_upgrade_and_purge(cli: CliRunner, tmp_path: Path) -> None:
    from tokenward.cli import app

    url = f"sqlite:///{tmp_path / 'cli' / 'tw.db'}"
    for _ in range(2):  # idempotent
        result = cli.invoke(app, ["db", "upgrade", "--store", url])
        assert result.exit_code == 0, result.output
        assert f"revision {head_revision()} (head)" in result.output

    async def seed() -> None:
        async with SQLStore(url) as store:
            await store.create_family(
                family("old", expires_at=NOW + 30 * DAY), RefreshTokenRecord(h("old/0"), "old", NOW)
            )
            await store.create_family(
                family("new", expires_at=NOW + 60 * DAY), RefreshTokenRecord(h("new/0"), "new", NOW)
            )
            # idle expiry of "new" is NOW + 14 d: push it beyond the purge horizon
            await store.rotate(
                h("new/0"),
                RefreshTokenRecord(h("new/1"), "new", NOW),
                now=NOW + 35 * DAY,
                grace=10,
                idle_expires_at=NOW + 49 * DAY,
                revocation_until=NOW + 35 * DAY + 900,
            )
            await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 900)

    asyncio.run(seed())
    # now = NOW + 40 d: "old" expired at NOW + 30 d; with a 7 d margin it is gone
    result = cli.invoke(app, ["db", "purge", "--store", url, "--margin", "7d"])
    assert result.exit_code == 0, result.output
    assert "purged 1 families, 1 refresh tokens, 1 revocation events" in result.output

    async def check() -> tuple[bool, bool]:
        async with SQLStore(url) as store:
            return (await store.get_family("old") is None, await store.get_family("new") is None)

    assert asyncio.run(check()) == (True, False)
    # with a margin longer than the horizon nothing more goes
    result = cli.invoke(app, ["db", "purge", "--store", url, "--margin", "30d"])
    assert "purged 0 families" in result.output


def test_cli_db_upgrade_unreachable_is_a_one_line_error(cli: CliRunner) -> None:
    from tokenward.cli import app

    url = "postgresql://tw:hunter2@127.0.0.1:1/test"
    result = cli.invoke(app, ["db", "upgrade", "--store", url, "--timeout", "1"])
    assert result.exit_code == 2
    assert "unavailable" in result.output and "hunter2" not in result.output


# -- fail closed ---------------------------------------------------------------------------
async def test_unreachable_postgres_is_store_unavailable_within_timeout() -> None:
    store = SQLStore("postgresql://tw:hunter2@127.0.0.1:1/test", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert time.monotonic() - started < 0.5 + HANG  # bounded by the timeout, not hung
    message = str(info.value)
    assert "postgresql" in message and "127.0.0.1:1" in message and "hunter2" not in message
    assert info.value.status_code == 503


async def test_silent_postgres_does_not_hang() -> None:
    """A server that accepts TCP but never answers: bounded by connect_timeout (>= 2 s), not
    hung (without it the connect would wait forever)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = SQLStore(f"postgresql://tw@127.0.0.1:{port}/test", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.open()
        assert time.monotonic() - started < 2 + HANG


async def test_locked_sqlite_is_store_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    async with SQLStore(f"sqlite:///{db}", timeout=0.3) as store:
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable, match="sqlite"):
                await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 5)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # recovery needs no restart
        event = await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 5)
        assert event.seq == 1


async def test_not_open_is_a_configuration_error(tmp_path: Path) -> None:
    from tokenward.errors import ConfigurationError

    store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigurationError):
        await store.ping()
    with pytest.raises(ConfigurationError):
        SQLStore("sqlite:///x.db", schema="nope")
    with pytest.raises(ConfigurationError):
        SQLStore(POSTGRES_URL, schema="bad; DROP TABLE x")


# -- PostgreSQL LISTEN/NOTIFY --------------------------------------------------------------
async def test_postgres_notify_wakes_waiter(pg_schema: str) -> None:
    # polling every 60 s: only NOTIFY can deliver the event inside the 0.5 s wait below
    follower = SQLStore(POSTGRES_URL, schema=pg_schema, poll_interval=60.0)
    writer = SQLStore(POSTGRES_URL, schema=pg_schema)
    async with follower, writer:
        assert await follower.wait_revocations(0, now=lambda: NOW, timeout=0.3) == []
        listener = follower._listener
        assert listener is not None
        for _ in range(100):  # the LISTEN connection comes up in the background
            if listener.ready:
                break
            await asyncio.sleep(0.02)
        assert listener.ready

        async def revoke_soon() -> None:
            await asyncio.sleep(0.05)
            await writer.add_revocation(RevocationKind.SID, "s1", now=NOW, until=NOW + 60)

        task = asyncio.create_task(revoke_soon())
        events = await follower.wait_revocations(0, now=lambda: NOW, timeout=0.5)
        await task
        assert [(e.kind, e.value) for e in events] == [(RevocationKind.SID, "s1")]


async def test_postgres_notify_delivers_events_without_a_query(pg_schema: str) -> None:
    """The NOTIFY payload carries the events and the listener knows the committed ``seq``
    (counter read after ``LISTEN`` + notifications): a listening follower neither polls nor
    re-reads the table, it takes the events from its buffer; a notification of another
    schema on the same database does not enter its buffer."""
    follower = SQLStore(POSTGRES_URL, schema=pg_schema, poll_interval=60.0)
    writer = SQLStore(POSTGRES_URL, schema=pg_schema)
    other = SQLStore(POSTGRES_URL, schema=pg_schema + "_x")
    try:
        async with follower, writer, other:
            before = await writer.add_revocation(RevocationKind.JTI, "j0", now=NOW, until=NOW + 60)
            assert await follower.wait_revocations(0, now=lambda: NOW, timeout=5.0) == [before]
            listener = follower._listener
            assert listener is not None
            for _ in range(100):
                if listener.ready:
                    break
                await asyncio.sleep(0.02)
            assert listener.ready and listener.latest == before.seq  # the counter, read
            reads = 0
            table_read = follower.revocations_after

            async def counting(cursor: int, *, now: float, limit: int = 1000) -> list[Any]:
                nonlocal reads
                reads += 1
                return await table_read(cursor, now=now, limit=limit)

            follower.revocations_after = counting  # type: ignore[method-assign]
            await other.add_revocation(RevocationKind.JTI, "elsewhere", now=NOW, until=NOW + 60)
            waiter = asyncio.create_task(
                follower.wait_revocations(before.seq, now=lambda: NOW, timeout=5.0)
            )
            e1 = await writer.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 60)
            assert await waiter == [e1]
            subject = await writer.revoke_subject("alice", now=NOW, until=NOW + 60)
            got = await follower.wait_revocations(e1.seq, now=lambda: NOW, timeout=5.0)
            assert got == subject
            assert reads == 0  # no read of the table at all
            # nothing new: a short wait returns empty, still without reading
            assert (
                await follower.wait_revocations(subject[-1].seq, now=lambda: NOW, timeout=0.1) == []
            )
            assert reads == 0
            # the other schema's event never entered this store's buffer
            assert listener.latest == subject[-1].seq
            assert [e.value for e in listener.buffered(before.seq, NOW, 10)[0]] == ["j1", "alice"]
    finally:
        await asyncio.to_thread(drop_postgres_schema, pg_schema + "_x")


async def test_postgres_events_too_big_for_a_notify_payload_are_read_from_the_table(
    pg_schema: str,
) -> None:
    """PostgreSQL caps a NOTIFY payload at 8000 bytes: a larger batch announces only its last
    ``seq``, and the follower reads the events from the table."""
    follower = SQLStore(POSTGRES_URL, schema=pg_schema, poll_interval=60.0)
    writer = SQLStore(POSTGRES_URL, schema=pg_schema)
    async with follower, writer:
        for i in range(120):
            sid = f"s{i:03d}-" + "x" * 60
            await writer.create_family(family(sid), RefreshTokenRecord(h(f"{sid}/0"), sid, NOW))
        assert await follower.wait_revocations(0, now=lambda: NOW, timeout=0.05) == []
        listener = follower._listener
        assert listener is not None
        for _ in range(100):
            if listener.ready:
                break
            await asyncio.sleep(0.02)
        events = await writer.revoke_subject("alice", now=NOW, until=NOW + 60)
        assert len(events) == 121
        got: list[Any] = []
        while len(got) < len(events):
            got += await follower.wait_revocations(len(got), now=lambda: NOW, timeout=2.0)
        assert got == events
        assert listener.latest == events[-1].seq  # announced, ...
        assert listener.buffered(0, NOW, 1000)[0] == []  # ... but not carried


def test_listener_payloads() -> None:
    """What a listener makes of payloads: its schema's events are buffered, another schema's
    are ignored, an oversized batch is announced by ``seq`` only, anything unreadable is a hint
    to read the table."""
    from tokenward.store.sql.listener import MAX_PAYLOAD, PgListener, notify_payload

    def ev(seq: int, value: str = "v") -> RevocationEvent:
        return RevocationEvent(seq, RevocationKind.JTI, value, NOW + 60, NOW)

    listener = PgListener("postgresql://unused", schema="a")
    listener._on_notify(notify_payload("b", [ev(1)]))
    assert listener.latest == 0 and listener.buffered(0, NOW, 10) == ([], 0)
    listener._on_notify(notify_payload("a", [ev(1), ev(2)]))
    assert listener.latest == 2 and listener.buffered(0, NOW, 10) == ([ev(1), ev(2)], 2)
    assert listener.buffered(1, NOW + 61, 10) == ([], 2)  # expired: skipped, cursor moves
    big = [ev(3 + i, "x" * 200) for i in range(50)]
    payload = notify_payload("a", big)
    assert len(payload) <= MAX_PAYLOAD
    listener._on_notify(payload)
    assert listener.latest == 52 and listener.buffered(2, NOW, 10) == ([], 2)
    for odd in ("42", "not json", '{"s": "a", "n": 60, "e": [[60, "bogus", "v", 1, 1]]}'):
        listener._on_notify(odd)
    assert listener._hints == 3 and listener.latest == 52


def test_authz_migration_gives_admins_the_admin_role_and_keeps_client_scopes(
    tmp_path: Path,
) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from tokenward.store.sql import alembic_config

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(
            "INSERT INTO users VALUES ('root', 'h', 1.0, 1, 0, '{}'), ('bob', 'h', 1.0, 0, 0, '{}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO clients VALUES ('svc', 1.0, 'x', 'client_credentials', 'read write',"
            " NULL), ('web', 1.0, NULL, 'password', '', NULL)"
        )
        command.upgrade(cfg, "head")
    engine.dispose()

    async def check() -> None:
        async with SQLStore(f"sqlite:///{db}") as store:
            root, bob = await store.get_user("root"), await store.get_user("bob")
            assert root is not None and root.roles == ("admin",)
            assert bob is not None and bob.roles == ()
            svc, web = await store.get_client("svc"), await store.get_client("web")
            assert svc is not None and svc.scopes == ("read", "write") and svc.resources == ()
            assert web is not None and web.scopes == ()
            assert await store.list_resources() == [] and await store.list_roles() == []

    asyncio.run(check())

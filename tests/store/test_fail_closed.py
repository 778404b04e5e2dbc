"""Fail closed under outages: a loopback fault proxy in front of Redis and PostgreSQL.

In the middle of a run of rotations and revocations the proxy is paused (silent network), then
cut (connections reset, new ones refused), then restored. While it is down every store call
must raise ``StoreUnavailable`` within its timeout plus ``support.wait.HANG``: bounded, never
hung (the outage lasts until the test restores it), and never a silent success. After
``restore()`` the *same* store object works again, no rotation is half applied (exactly one
live refresh token per family) and every acknowledged revocation is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.env import require_module, service_missing
from support.faultproxy import FaultProxy
from support.stores import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_URL,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_URL,
    rerouted,
)
from support.wait import HANG
from tokenward.clock import FrozenClock
from tokenward.errors import StoreUnavailable
from tokenward.store.base import (
    Family,
    RefreshTokenRecord,
    RevocationKind,
    RotationOutcome,
    Store,
)

# serial: not for an assertion on time but for the product's own: the store timeout under test
# is 0.5 s (so that the outage phases, ten timed-out calls each, stay short), and on a loaded
# machine an ordinary PostgreSQL commit before the outage can exceed it (seen with two parallel
# workers at load average 9). Alone, the setup's calls are far inside it.
pytestmark = [pytest.mark.services, pytest.mark.serial]

TIMEOUT = 0.5  # the store's per-call timeout in these tests
SLACK = HANG  # every failing call ends within TIMEOUT + SLACK: bounded, not hung
GRACE = 10.0
ROTATING = 4  # families rotated during the run
REVOCABLE = 6  # families revoked (one by one) during the run


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


def _require(name: str, host: str, port: int) -> None:
    if not _reachable(host, port):
        service_missing(f"{name} at {host}:{port} is unreachable")


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def successor(parent: bytes) -> bytes:
    """Deterministic, as the session layer derives it: a retry presents the same child."""
    return hashlib.sha256(b"child:" + parent).digest()


# -- backends behind the proxy -------------------------------------------------------------
async def _redis_store(port: int) -> tuple[Store, Callable[[], Awaitable[None]]]:
    from tokenward.store.redis import RedisStore

    prefix = f"twfc-{uuid.uuid4().hex[:12]}"
    store = RedisStore(rerouted(REDIS_URL, port), prefix=prefix, timeout=TIMEOUT)

    async def cleanup() -> None:
        direct = RedisStore(REDIS_URL, prefix=prefix)
        await direct.drop()
        await direct.close()

    return store, cleanup


async def _postgres_store(port: int) -> tuple[Store, Callable[[], Awaitable[None]]]:
    psycopg = require_module("psycopg")
    from tokenward.store.sql import SQLStore

    schema = f"tw_fc_{uuid.uuid4().hex[:12]}"
    store = SQLStore(rerouted(POSTGRES_URL, port), timeout=TIMEOUT, schema=schema)

    async def cleanup() -> None:
        conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        async with conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]

    return store, cleanup


BACKENDS = {
    "redis": (REDIS_HOST, REDIS_PORT, _redis_store),
    "postgres": (POSTGRES_HOST, POSTGRES_PORT, _postgres_store),
}


@pytest.fixture(params=sorted(BACKENDS))
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, FaultProxy]]:
    host, port, factory = BACKENDS[request.param]
    _require(request.param, host, port)
    proxy = FaultProxy(port, target_host=host).start()
    store, cleanup = await factory(proxy.port)
    try:
        await store.open()
        yield store, proxy
    finally:
        proxy.restore()
        with contextlib.suppress(Exception):
            await store.close()
        proxy.stop()
        await cleanup()


# -- the workload --------------------------------------------------------------------------
@dataclass
class Run:
    store: Store
    clock: FrozenClock
    leaf: dict[str, bytes] = field(default_factory=dict)  # last acknowledged leaf per family
    seen: dict[str, list[bytes]] = field(default_factory=dict)  # every hash ever sent
    acked_events: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> kind, value
    acked_revoked: set[str] = field(default_factory=set)
    ok: int = 0
    failures: list[tuple[str, float]] = field(default_factory=list)  # op, seconds to fail
    unexpected: list[Exception] = field(default_factory=list)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    n: int = 0

    @property
    def now(self) -> float:
        return self.clock.now()

    async def setup(self) -> None:
        now = self.now
        for i in range(ROTATING + REVOCABLE):
            sid = f"fam-{i}"
            first = h(f"{sid}:root")
            fam = Family(
                sid=sid,
                sub=f"user-{i % 2}",
                client_id="web",
                scope="read",
                created_at=now,
                last_used_at=now,
                expires_at=now + 30 * 86400,
                idle_expires_at=now + 14 * 86400,
                current_hash=first,
            )
            await self.store.create_family(fam, RefreshTokenRecord(first, sid, now))
            self.leaf[sid] = first
            self.seen[sid] = [first]

    async def rotate(self, sid: str) -> RotationOutcome:
        parent = self.leaf[sid]
        child = successor(parent)
        if child not in self.seen[sid]:
            self.seen[sid].append(child)
        now = self.now
        result = await self.store.rotate(
            parent,
            RefreshTokenRecord(child, sid, now, parent),
            now=now,
            grace=GRACE,
            idle_expires_at=now + 14 * 86400,
            revocation_until=now + 900,
        )
        if result.outcome in (RotationOutcome.ROTATED, RotationOutcome.GRACE):
            self.leaf[sid] = child
        return result.outcome

    async def revoke_jti(self) -> None:
        self.n += 1
        value = f"jti-{self.n}"
        event = await self.store.add_revocation(
            RevocationKind.JTI, value, now=self.now, until=self.now + 900
        )
        self.acked_events[event.seq] = ("jti", value)

    async def revoke_family(self, sid: str) -> None:
        event = await self.store.revoke_family(
            sid, now=self.now, reason="logout", until=self.now + 900
        )
        if event is not None:
            self.acked_events[event.seq] = ("sid", sid)
        self.acked_revoked.add(sid)

    async def step(self, i: int) -> None:
        self.clock.advance(0.001)
        choice = i % 5
        if choice < 3:
            outcome = await self.rotate(f"fam-{i % ROTATING}")
            assert outcome in (RotationOutcome.ROTATED, RotationOutcome.GRACE), outcome
        elif choice == 3:
            await self.revoke_jti()
        else:
            await self.revoke_family(f"fam-{ROTATING + (i // 5) % REVOCABLE}")

    async def loop(self, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.step(i)
                self.ok += 1
                if self.ok >= 25:
                    self.progressed.set()
            except StoreUnavailable:
                self.failures.append((f"step {i % 5}", time.monotonic() - started))
                await asyncio.sleep(0.01)  # an outage: do not spin (not a wait for time)
            except Exception as exc:  # reported by the test
                self.unexpected.append(exc)
                return
            i += 1


async def _assert_fails_fast(name: str, call: Callable[[], Awaitable[Any]], bound: float) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await call()
    elapsed = time.monotonic() - started
    assert elapsed <= bound, f"{name} took {elapsed:.2f}s to fail (bound {bound:.2f}s)"


async def _every_call_fails_closed(run: Run) -> None:
    store, now = run.store, run.now
    bound = TIMEOUT + SLACK
    sid = "fam-0"
    parent = run.leaf[sid]
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "ping": store.ping,
        "rotate": lambda: store.rotate(
            parent,
            RefreshTokenRecord(successor(parent), sid, now, parent),
            now=now,
            grace=GRACE,
            idle_expires_at=now + 100,
            revocation_until=now + 900,
        ),
        "get_refresh_token": lambda: store.get_refresh_token(parent, sid=sid),
        "get_family": lambda: store.get_family(sid),
        "revoke_family": lambda: store.revoke_family(
            f"fam-{ROTATING}", now=now, reason="x", until=now + 900
        ),
        "revoke_subject": lambda: store.revoke_subject("nobody", now=now, until=now + 900),
        "add_revocation": lambda: store.add_revocation(
            RevocationKind.JTI, "during-outage", now=now, until=now + 900
        ),
        "revocations_after": lambda: store.revocations_after(0, now=now),
        "revocation_cursor": store.revocation_cursor,
    }
    for name, call in calls.items():
        await _assert_fails_fast(name, call, bound)
    # a follower's long poll is bounded by its own wait plus the store timeout
    await _assert_fails_fast(
        "wait_revocations",
        lambda: store.wait_revocations(10**9, now=lambda: now, timeout=0.3),
        0.3 + bound,
    )


async def _check_state_after_recovery(run: Run) -> None:
    store, now = run.store, run.now
    for i in range(ROTATING):
        sid = f"fam-{i}"
        family = await store.get_family(sid)
        assert family is not None and not family.revoked, sid
        live = []
        for token_hash in run.seen[sid]:
            found = await store.get_refresh_token(token_hash, sid=sid)
            if found is not None and found[0].consumed_at is None:
                live.append(token_hash)
        assert live == [family.current_hash], f"{sid}: {len(live)} live refresh tokens"
        # the client retries from its last acknowledged leaf: a rotation that was applied but
        # not acknowledged is answered from the grace window, never treated as reuse
        assert await run.rotate(sid) in (RotationOutcome.ROTATED, RotationOutcome.GRACE)
    events = {e.seq: e for e in await store.revocations_after(0, now=now, limit=10_000)}
    for seq, (kind, value) in run.acked_events.items():
        assert seq in events, f"acknowledged revocation {seq} lost"
        assert (events[seq].kind.value, events[seq].value) == (kind, value)
    for sid in run.acked_revoked:
        family = await store.get_family(sid)
        assert family is not None and family.revoked, f"acknowledged revocation of {sid} lost"


async def test_outage_mid_run_fails_closed_and_recovers(
    env: tuple[Store, FaultProxy], clock: FrozenClock
) -> None:
    store, proxy = env
    run = Run(store, clock)
    await run.setup()
    stop = asyncio.Event()
    runner = asyncio.create_task(run.loop(stop))
    await asyncio.wait_for(run.progressed.wait(), 20)
    ok_before = run.ok

    proxy.pause()
    await _every_call_fails_closed(run)
    proxy.cut()
    await _every_call_fails_closed(run)
    proxy.restore()

    stop.set()
    await asyncio.wait_for(runner, 10)
    assert not run.unexpected, run.unexpected
    assert ok_before >= 25
    assert run.failures, "the run never noticed the outage"
    slow = [(op, round(t, 2)) for op, t in run.failures if t > TIMEOUT + SLACK]
    assert not slow, f"calls exceeded the timeout bound: {slow}"

    # recovery without reopening: the very same store object works again
    await store.ping()
    await run.step(0)
    await _check_state_after_recovery(run)


async def test_pause_then_restore_resumes_without_reopen(
    env: tuple[Store, FaultProxy], clock: FrozenClock
) -> None:
    store, proxy = env
    run = Run(store, clock)
    await run.setup()
    await run.revoke_jti()
    proxy.pause()
    await _assert_fails_fast("revoke_jti", run.revoke_jti, TIMEOUT + SLACK)
    await _assert_fails_fast("rotate", lambda: run.rotate("fam-1"), TIMEOUT + SLACK)
    proxy.restore()
    await store.ping()
    assert await run.rotate("fam-1") in (RotationOutcome.ROTATED, RotationOutcome.GRACE)
    await run.revoke_jti()
    await _check_state_after_recovery(run)


async def test_store_refused_from_the_start_fails_closed(
    env: tuple[Store, FaultProxy], clock: FrozenClock
) -> None:
    """A cut before any call of a fresh store object: connect refused -> StoreUnavailable."""
    store, proxy = env
    proxy.cut()
    await _assert_fails_fast("ping", store.ping, TIMEOUT + SLACK)
    now = clock.now()
    await _assert_fails_fast(
        "add_revocation",
        lambda: store.add_revocation(RevocationKind.SID, "s", now=now, until=now + 1),
        TIMEOUT + SLACK,
    )
    proxy.restore()
    await store.ping()

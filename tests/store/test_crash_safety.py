"""Crash safety: a failure at any step of a rotation or a revocation never leaves
two live refresh tokens in one family, and every acknowledged revocation is present (also
after a "restart": a fresh store instance on the same data).

Two levels of injection:

* between the store calls the :class:`SessionManager` makes — a wrapper raises at call ``k``,
  either *before* the call reaches the store (nothing happened) or *after* it returned (it
  committed, but the acknowledgement was lost);
* inside one SQL transaction — an engine event raises at the ``j``-th statement of a
  ``rotate``/``revoke``, proving the transaction boundary makes partial states impossible.
  (The memory store has no I/O inside a call, so it cannot stop half-way; a Redis call is one
  Lua script, atomic on the server.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from support.stores import StoreFactory
from tokenward import FrozenClock, SessionManager
from tokenward.errors import InvalidGrant, StoreUnavailable
from tokenward.issuer import Issuer
from tokenward.sessions import hash_refresh_token, refresh_token_sid
from tokenward.store import RefreshTokenRecord, Store
from tokenward.store.sql import SQLStore
from tokenward.testing import TEST_AUDIENCE, TEST_ISSUER, throwaway_keyring


class Crash(Exception):
    """The injected failure."""


class FaultyStore:
    """Delegates to ``inner``; the ``k``-th store call (1-based) raises :class:`Crash` —
    ``before`` delegating or ``after`` it returned."""

    def __init__(self, inner: Store, k: int, when: str) -> None:
        self.inner, self.k, self.when = inner, k, when
        self.calls: list[str] = []
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            hit = len(self.calls) == self.k
            if hit and self.when == "before":
                self.fired = True
                raise Crash(f"crash before {name}")
            result = await target(*args, **kwargs)
            if hit:
                self.fired = True
                raise Crash(f"crash after {name}")
            return result

        return call


def manager(store: Any, clock: FrozenClock) -> SessionManager:
    issuer = Issuer(
        throwaway_keyring(clock=clock), issuer=TEST_ISSUER, audience=TEST_AUDIENCE, clock=clock
    )
    return SessionManager(issuer, store, grace_period=10)


async def assert_one_live_token(store: Store, sid: str, tokens: list[str]) -> None:
    family = await store.get_family(sid)
    assert family is not None
    live = []
    for token in tokens:
        found = await store.get_refresh_token(
            hash_refresh_token(token), sid=refresh_token_sid(token)
        )
        if found is not None and found[0].consumed_at is None:
            live.append(token)
    assert len(live) <= 1, "two live refresh tokens in one family"
    if not family.revoked:
        assert [hash_refresh_token(t) for t in live] == [family.current_hash]


async def assert_revoked(store: Store, sid: str, now: float) -> None:
    family = await store.get_family(sid)
    assert family is not None and family.revoked
    events = await store.revocations_after(0, now=now)
    assert ("sid", sid) in {(e.kind.value, e.value) for e in events}


async def injected(
    run: Callable[[Any], Awaitable[Any]], store: Store, k: int, when: str
) -> tuple[bool, Any, FaultyStore]:
    """Run ``run(faulty_store)``; (acknowledged?, result, wrapper)."""
    faulty = FaultyStore(store, k, when)
    try:
        result = await run(faulty)
    except Crash:
        return False, None, faulty
    return True, result, faulty


@pytest.mark.parametrize("when", ["before", "after"])
async def test_crash_between_the_steps_of_a_rotation(
    store_factory: StoreFactory,
    clock: FrozenClock,
    when: str,
) -> None:
    store = await store_factory()
    k = 1
    while True:
        pair = await manager(store, clock).start(sub="alice", client_id="web")
        successor = await manager(store, clock).successor_of(pair.refresh_token)

        async def refresh(s: Any, token: str = pair.refresh_token) -> Any:
            return await manager(s, clock).refresh(token, client_id="web")

        acked, result, faulty = await injected(refresh, store, k, when)
        await assert_one_live_token(store, pair.session_id, [pair.refresh_token, successor])
        # the client retries with the same token: it is never logged out, and if the crash
        # came after the commit it gets the very successor that was committed
        retry = await manager(store, clock).refresh(pair.refresh_token, client_id="web")
        assert retry.refresh_token == successor
        await assert_one_live_token(store, pair.session_id, [pair.refresh_token, successor])
        if acked:
            assert result.refresh_token == successor
            assert not faulty.fired
            break
        k += 1
    assert faulty.calls == ["get_refresh_token", "get_or_create_secret", "rotate"]


WRITES = {"rotate", "revoke_family", "revoke_subject", "add_revocation"}
REVOCATIONS: dict[str, Callable[[SessionManager, str, str], Awaitable[Any]]] = {
    "revoke_session": lambda m, sid, _t: m.revoke_session(sid),
    "revoke_refresh_token": lambda m, _sid, token: m.revoke_refresh_token(token),
    "revoke_subject": lambda m, _sid, _t: m.revoke_subject("alice"),
    "reuse_detected": lambda m, _sid, token: m.refresh(token),
}


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", sorted(REVOCATIONS))
async def test_crash_between_the_steps_of_a_revocation(
    store_factory: StoreFactory,
    clock: FrozenClock,
    kind: str,
    when: str,
) -> None:
    store = await store_factory()
    k = 1
    while True:
        pair = await manager(store, clock).start(sub="alice", client_id="web")
        nxt = await manager(store, clock).refresh(pair.refresh_token)
        clock.advance(11)  # past the grace window: re-presenting the parent is reuse
        token = pair.refresh_token if kind == "reuse_detected" else nxt.refresh_token

        async def revoke(s: Any, sid: str = pair.session_id, t: str = token) -> Any:
            return await REVOCATIONS[kind](manager(s, clock), sid, t)

        try:
            acked, _, faulty = await injected(revoke, store, k, when)
        except InvalidGrant:  # reuse detection answers with an error, yet it is acknowledged
            acked, faulty = True, None
        await assert_one_live_token(store, pair.session_id, [pair.refresh_token, nxt.refresh_token])
        if acked:
            await assert_revoked(store, pair.session_id, clock.now())
            break
        assert faulty is not None
        if when == "after" and faulty.calls[-1] in WRITES:
            # committed, only the answer was lost: it must be there
            await assert_revoked(store, pair.session_id, clock.now())
        k += 1
    # an acknowledged revocation survives a restart (a new instance on the same data)
    if store_factory.backend != "memory":  # memory:// is not durable by design
        await store.close()
        again = await store_factory()
        await assert_revoked(again, pair.session_id, clock.now())
        with pytest.raises(InvalidGrant):
            await manager(again, clock).refresh(nxt.refresh_token)


async def test_acknowledged_jti_revocation_is_present(
    store_factory: StoreFactory,
    clock: FrozenClock,
) -> None:
    store = await store_factory()
    for when in ("before", "after"):
        acked, _, _ = await injected(
            lambda s, w=when: manager(s, clock).revoke_access_token(f"jti-{w}"), store, 1, when
        )
        assert not acked
        values = {e.value for e in await store.revocations_after(0, now=clock.now())}
        assert (f"jti-{when}" in values) is (when == "after")
    await manager(store, clock).revoke_access_token("jti-acked")
    if store_factory.backend != "memory":
        await store.close()
        store = await store_factory()
    values = {e.value for e in await store.revocations_after(0, now=clock.now())}
    assert "jti-acked" in values


# -- inside one SQL transaction -----------------------------------------------------------


class StatementFault:
    """Raise at the ``j``-th SQL statement while armed (SQLAlchemy engine event, and the
    statement hook of a SQLite store's own connections for the refresh path)."""

    def __init__(self, store: SQLStore) -> None:
        from sqlalchemy import event

        engine = store._engine
        assert engine is not None
        self.engine = engine.sync_engine
        self.lanes = [x for x in (store._rotate_lane, store._read_lane) if x is not None]
        self.j = 0
        self.seen = 0
        self.fired = False
        event.listen(self.engine, "before_cursor_execute", self._hook)
        for lane in self.lanes:
            lane.on_statement = self._hook

    def arm(self, j: int) -> None:
        self.j, self.seen, self.fired = j, 0, False

    def disarm(self) -> None:
        self.j = 0

    def _hook(self, *_args: Any, **_kw: Any) -> None:
        if not self.j:
            return
        self.seen += 1
        if self.seen == self.j:
            self.fired = True
            raise Crash(f"crash at statement {self.j}")

    def remove(self) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._hook)
        for lane in self.lanes:
            lane.on_statement = None


@pytest.fixture
async def sql_store(store_factory: StoreFactory) -> SQLStore:
    if store_factory.backend not in ("sqlite", "postgres"):
        pytest.skip("transaction-level injection is for the SQL backends")
    store = await store_factory()
    assert isinstance(store, SQLStore)
    return store


async def test_crash_inside_the_rotation_transaction(
    sql_store: SQLStore, clock: FrozenClock
) -> None:
    fault = StatementFault(sql_store)
    try:
        j = 1
        while True:
            mgr = manager(sql_store, clock)
            pair = await mgr.start(sub="alice", client_id="web")
            successor = await mgr.successor_of(pair.refresh_token)
            found = await sql_store.get_refresh_token(
                hash_refresh_token(pair.refresh_token), sid=refresh_token_sid(pair.refresh_token)
            )
            assert found is not None
            fault.arm(j)
            with contextlib.suppress(Crash, StoreUnavailable):
                await sql_store.rotate(
                    hash_refresh_token(pair.refresh_token),
                    RefreshTokenRecord(hash_refresh_token(successor), pair.session_id, clock.now()),
                    now=clock.now(),
                    grace=10,
                    idle_expires_at=clock.now() + 1000,
                    revocation_until=clock.now() + 1000,
                )
            fired = fault.fired
            fault.disarm()
            family = await sql_store.get_family(pair.session_id)
            assert family is not None
            child = await sql_store.get_refresh_token(
                hash_refresh_token(successor), sid=refresh_token_sid(successor)
            )
            parent = await sql_store.get_refresh_token(
                hash_refresh_token(pair.refresh_token), sid=refresh_token_sid(pair.refresh_token)
            )
            assert parent is not None
            if fired:  # rolled back as a whole: nothing of the rotation is visible
                assert child is None and parent[0].consumed_at is None
                assert family.generation == 0
                assert family.current_hash == hash_refresh_token(pair.refresh_token)
                j += 1
                continue
            assert child is not None and parent[0].consumed_at is not None
            assert family.generation == 1
            break
        assert j > 3  # the rotation really has several statements to fail between
    finally:
        fault.remove()


async def test_crash_inside_the_reuse_revocation_transaction(
    sql_store: SQLStore, clock: FrozenClock
) -> None:
    fault = StatementFault(sql_store)
    try:
        j = 1
        while True:
            mgr = manager(sql_store, clock)
            pair = await mgr.start(sub="alice", client_id="web")
            await mgr.refresh(pair.refresh_token)
            clock.advance(11)
            fault.arm(j)
            with contextlib.suppress(Crash, StoreUnavailable, InvalidGrant):
                await mgr.refresh(pair.refresh_token)
            fired = fault.fired
            fault.disarm()
            family = await sql_store.get_family(pair.session_id)
            assert family is not None
            events = await sql_store.revocations_after(0, now=clock.now())
            has_event = pair.session_id in {e.value for e in events}
            # revoked iff its event is in the feed: never one without the other
            assert family.revoked is has_event
            if fired:
                assert not family.revoked
                j += 1
                continue
            assert family.revoked
            break
        assert j > 2
    finally:
        fault.remove()

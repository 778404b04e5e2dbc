"""The Denylist mirror and its follower on the revocation feed, with a frozen clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from support.stores import StoreFactory
from tokenward import FrozenClock
from tokenward.claims import AccessTokenClaims
from tokenward.errors import RevokedToken, StoreUnavailable
from tokenward.revocation import Denylist, DenylistFollower
from tokenward.store import RevocationEvent, RevocationKind, Store
from tokenward.store.memory import MemoryStore
from tokenward.testing import make_session_manager

T0 = 1_800_000_000.0


def claims(
    *, jti: str = "j", sid: str | None = None, sub: str = "alice", iat: float = T0
) -> AccessTokenClaims:
    return AccessTokenClaims(
        iss="i", sub=sub, aud=("a",), exp=iat + 900, iat=iat, jti=jti, client_id="c", sid=sid
    )


def ev(seq: int, kind: str, value: str, until: float, at: float = T0) -> RevocationEvent:
    return RevocationEvent(seq, RevocationKind(kind), value, until, at)


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """The first instance of the shared backend list (memory, sqlite, postgres, redis)."""
    return await store_factory(poll_interval=0.01)


# -- Denylist ------------------------------------------------------------------------------


def test_each_kind_is_checked(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock)
    dl.apply(
        [
            ev(1, "jti", "j1", T0 + 100),
            ev(2, "sid", "s1", T0 + 100),
            ev(3, "sub", "bob", T0 + 100, at=T0 + 0.9),
        ]
    )
    assert len(dl) == 3 and dl.cursor == 3
    with pytest.raises(RevokedToken, match="token revoked"):
        dl.check(claims(jti="j1"))
    with pytest.raises(RevokedToken, match="session revoked"):
        dl.check(claims(sid="s1"))
    with pytest.raises(RevokedToken, match="subject logged out"):
        dl.check(claims(sub="bob", iat=T0 - 1))
    dl.check(claims(sub="bob", iat=T0))  # iat == int(at): not covered (1 s resolution)
    dl.check(claims(jti="j2", sid="s2", sub="alice", iat=T0 - 100))
    assert dl.is_revoked(jti="j1", sid=None, sub=None, iat=0) == "token revoked"
    assert dl.is_revoked(jti=None, sid="s1", sub=None, iat=0) == "session revoked"
    assert dl.is_revoked(jti=None, sid=None, sub="bob", iat=T0 - 1) == "subject logged out"
    assert dl.is_revoked(jti="x", sid="y", sub="bob", iat=T0) is None


def test_entries_are_dropped_after_until(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock)
    dl.apply(
        [ev(1, "jti", "j1", T0 + 10.5), ev(2, "sid", "s1", T0 + 20), ev(3, "sub", "u", T0 + 20)]
    )
    clock.set(T0 + 10.5)
    assert dl.sweep() == 0  # the bucket is ceil(until): never early
    with pytest.raises(RevokedToken):
        dl.check(claims(jti="j1"))
    clock.set(T0 + 11)
    assert dl.sweep() == 1
    dl.check(claims(jti="j1"))
    assert len(dl) == 2
    clock.set(T0 + 20)
    assert dl.sweep() == 2 and len(dl) == 0
    # already-expired events are never added
    dl.apply([ev(4, "jti", "late", T0 + 19)])
    assert len(dl) == 0 and dl.cursor == 4


def test_a_value_revoked_twice_lives_until_the_later_until(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock)
    dl.apply([ev(1, "jti", "j", T0 + 100), ev(2, "jti", "j", T0 + 10)])
    clock.set(T0 + 50)
    dl.sweep()
    with pytest.raises(RevokedToken):
        dl.check(claims(jti="j"))
    clock.set(T0 + 100)
    dl.sweep()
    dl.check(claims(jti="j"))
    assert len(dl) == 0


def test_subject_watermark_only_moves_forward(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock)
    dl.apply([ev(1, "sub", "u", T0 + 100, at=T0 + 5), ev(2, "sub", "u", T0 + 50, at=T0 + 1)])
    with pytest.raises(RevokedToken):
        dl.check(claims(sub="u", iat=T0 + 4))
    clock.set(T0 + 60)
    dl.sweep()  # the later until wins, the entry stays
    with pytest.raises(RevokedToken):
        dl.check(claims(sub="u", iat=T0 + 4))


def test_apply_cursor_semantics(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock)
    dl.apply([ev(5, "jti", "own", T0 + 100)], advance=False)  # an own revocation
    assert dl.cursor == 0 and len(dl) == 1
    dl.apply([ev(4, "jti", "other", T0 + 100), ev(5, "jti", "own", T0 + 100)])
    assert dl.cursor == 5 and len(dl) == 2
    dl.apply([ev(3, "jti", "stale", T0 + 100)])  # at or below the cursor: skipped
    assert dl.is_revoked(jti="stale", sid=None, sub=None, iat=0) is None


def test_stale_denylist_fails_closed_with_503_not_401(clock: FrozenClock) -> None:
    dl = Denylist(clock=clock, max_staleness=30)
    with pytest.raises(StoreUnavailable, match="not loaded yet") as first:
        dl.check(claims())  # never synced
    assert (first.value.status_code, first.value.retry_after) == (503, 1)
    dl.mark_synced()
    dl.check(claims())
    clock.advance(30)
    dl.check(claims())
    clock.advance(1)
    with pytest.raises(StoreUnavailable, match="not refreshed for more than 30 s") as stale:
        dl.check(claims())  # 503 + Retry-After, never a 401: the token may well be valid
    assert (stale.value.status_code, stale.value.retry_after) == (503, 7)
    dl.mark_synced()
    dl.check(claims())
    dl.clear()
    assert dl.synced_at is None and dl.cursor == 0


async def test_load_pages_through_a_large_snapshot(clock: FrozenClock) -> None:
    store = MemoryStore()
    for i in range(2500):
        await store.add_revocation(RevocationKind.JTI, f"j{i}", now=T0, until=T0 + 100)
    await store.add_revocation(RevocationKind.JTI, "dead", now=T0, until=T0 - 1)
    dl = Denylist(clock=clock, max_staleness=5)
    await dl.load(store)
    assert len(dl) == 2500 and dl.cursor == 2501
    dl.check(claims(jti="j2501"))
    with pytest.raises(RevokedToken):
        dl.check(claims(jti="j1999"))


# -- the follower --------------------------------------------------------------------------


async def test_follower_mirrors_another_instance(store: Store, clock: FrozenClock) -> None:
    sessions = await make_session_manager(clock=clock, store=store)
    pair = await sessions.start(sub="alice", client_id="web")
    # another process: its own denylist and verifier, following the same store
    mirror = Denylist(clock=clock, max_staleness=60)
    follower = DenylistFollower(store, mirror, wait_timeout=0.01)
    verifier = sessions.verifier(revocation=mirror)
    await follower.step()  # snapshot
    assert verifier.verify(pair.access_token).sid == pair.session_id
    await sessions.revoke_session(pair.session_id)
    assert await follower.step() == 1
    with pytest.raises(RevokedToken, match="session revoked"):
        verifier.verify(pair.access_token)
    claims_ = sessions.verifier().verify(
        (await sessions.start(sub="bob", client_id="w")).access_token
    )
    await sessions.revoke_access_token(claims_.jti, exp=claims_.exp)
    await sessions.revoke_subject("carol")
    assert await follower.step() == 2
    assert mirror.cursor == await store.revocation_cursor() == 3
    assert await follower.step() == 0  # nothing new: a timeout, still synced
    assert follower.reloads == 0


async def test_follower_reloads_on_a_gap(clock: FrozenClock) -> None:
    store = MemoryStore()
    dl = Denylist(clock=clock)
    follower = DenylistFollower(store, dl, wait_timeout=0.01)
    await store.add_revocation(RevocationKind.JTI, "a", now=T0, until=T0 + 100)
    await follower.step()
    assert dl.cursor == 1
    # events 2..3 vanish (a trimmed feed), 4 is live
    await store.add_revocation(RevocationKind.JTI, "b", now=T0, until=T0 + 100)
    await store.add_revocation(RevocationKind.JTI, "c", now=T0, until=T0 + 100)
    store._events = [e for e in store._events if e.seq not in (2, 3)]
    await store.add_revocation(RevocationKind.JTI, "d", now=T0, until=T0 + 100)
    await follower.step()
    assert follower.reloads == 1 and dl.cursor == 4
    assert dl.is_revoked(jti="d", sid=None, sub=None, iat=0) == "token revoked"


async def test_follower_reloads_when_the_store_was_reset(clock: FrozenClock) -> None:
    store = MemoryStore()
    dl = Denylist(clock=clock)
    follower = DenylistFollower(store, dl, wait_timeout=0.01)
    for v in "abc":
        await store.add_revocation(RevocationKind.JTI, v, now=T0, until=T0 + 100)
    await follower.step()
    assert dl.cursor == 3
    fresh = MemoryStore()  # e.g. restored from an older backup
    await fresh.add_revocation(RevocationKind.SID, "s", now=T0, until=T0 + 100)
    follower.store = fresh
    await follower.step()  # empty wait, store cursor 1 < 3: snapshot
    assert follower.reloads == 1 and dl.cursor == 1
    assert dl.is_revoked(jti=None, sid="s", sub=None, iat=0) == "session revoked"
    # old entries are kept until their until (fail-closed direction)
    assert dl.is_revoked(jti="a", sid=None, sub=None, iat=0) == "token revoked"
    await fresh.add_revocation(RevocationKind.SID, "s2", now=T0, until=T0 + 100)
    await follower.step()
    assert dl.cursor == 2 and follower.reloads == 1


async def eventually(predicate: Callable[[], bool]) -> None:
    """Yield to other tasks until ``predicate()`` holds (bounded by a generous timeout)."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polling a plain predicate
            await asyncio.sleep(0)


class Flaky:
    """Delegates to a store; the first ``fail`` calls of ``wait_revocations`` raise."""

    def __init__(self, inner: Store, fail: int) -> None:
        self.inner, self.fail = inner, fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        if self.fail:
            self.fail -= 1
            raise StoreUnavailable("down")
        return await self.inner.wait_revocations(cursor, now=now, timeout=timeout)


async def test_follower_task_survives_errors_and_resumes(clock: FrozenClock) -> None:
    inner = MemoryStore()
    await inner.add_revocation(RevocationKind.JTI, "before", now=T0, until=T0 + 100)
    dl = Denylist(clock=clock, max_staleness=60)
    follower = DenylistFollower(Flaky(inner, 3), dl, wait_timeout=0.05, backoff=0.001)  # type: ignore[arg-type]
    follower.start()
    try:
        await eventually(lambda: dl.cursor == 1)  # the snapshot
        await inner.add_revocation(RevocationKind.SID, "after", now=T0, until=T0 + 100)
        await eventually(lambda: dl.is_revoked(jti=None, sid="after", sub=None, iat=0) is not None)
        assert follower.errors == 3 and follower.running
        assert dl.is_revoked(jti="before", sid=None, sub=None, iat=0) == "token revoked"
        dl.check(claims())  # synced, so not stale
    finally:
        await follower.stop()
    assert not follower.running


async def test_memory_wait_revocations_wakes_up_on_append() -> None:
    store = MemoryStore()
    waiter = asyncio.create_task(store.wait_revocations(0, now=lambda: T0, timeout=30))
    await asyncio.sleep(0)
    await store.add_revocation(RevocationKind.JTI, "x", now=T0, until=T0 + 1)
    async with asyncio.timeout(5):
        events = await waiter
    assert [e.value for e in events] == ["x"]
    assert await store.wait_revocations(1, now=lambda: T0, timeout=0) == []


async def test_follower_survives_a_broken_log_sink(
    clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokenward.revocation as revocation

    class Broken:
        def __getattr__(self, _name: str) -> Any:
            def fail(*_a: object, **_k: object) -> None:
                raise ValueError("I/O operation on closed file.")

            return fail

    monkeypatch.setattr(revocation, "_log", Broken())
    inner = MemoryStore()
    dl = Denylist(clock=clock)
    follower = DenylistFollower(Flaky(inner, 2), dl, wait_timeout=0.05, backoff=0.001)  # type: ignore[arg-type]
    follower.start()
    try:
        await eventually(lambda: dl.synced_at is not None)
        await inner.add_revocation(RevocationKind.JTI, "x", now=T0, until=T0 + 100)
        await eventually(lambda: dl.is_revoked(jti="x", sid=None, sub=None, iat=0) is not None)
        assert follower.errors == 2 and follower.running
    finally:
        await follower.stop()

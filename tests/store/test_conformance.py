"""The Store contract (tokenward.store.base), run unchanged against every backend.

Times come from constants (a frozen clock's view); nothing here sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.stores import BACKENDS, StoreFactory, open_store_factory
from tokenward.errors import AlreadyExists, ConfigurationError, NotFound
from tokenward.store import (
    Client,
    Family,
    RefreshTokenRecord,
    RevocationKind,
    RotationOutcome,
    RotationResult,
    Store,
    User,
)
from tokenward.store.base import Resource, Role

NOW = 1_800_000_000.0
GRACE = 10.0
ABSOLUTE = 30 * 86_400.0
IDLE = 14 * 86_400.0
UNTIL = NOW + 900.0


@pytest.fixture(params=[*BACKENDS, "redis-cluster"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Every backend, and the Redis store on a real local Redis Cluster (3 masters + 3
    replicas, started once per session)."""
    async for factory in open_store_factory(request.param, request, tmp_path):
        yield factory


SID_OF: dict[bytes, str] = {}
"""Token hash -> the family its label names (``"s1/0"`` is a token of ``s1``): what a tagged
refresh token tells the store."""


def h(label: str) -> bytes:
    digest = hashlib.sha256(label.encode()).digest()
    if "/" in label:
        SID_OF[digest] = label.split("/", 1)[0]
    return digest


async def get(store: Store, token_hash: bytes) -> tuple[RefreshTokenRecord, Family] | None:
    return await store.get_refresh_token(token_hash, sid=SID_OF.get(token_hash))


def family_of(sid: str, *, sub: str = "alice", now: float = NOW, **extra: object) -> Family:
    return Family(
        sid=sid,
        sub=sub,
        client_id="web",
        scope="read write",
        created_at=now,
        last_used_at=now,
        expires_at=now + ABSOLUTE,
        idle_expires_at=now + IDLE,
        current_hash=h(f"{sid}/0"),
        **extra,  # type: ignore[arg-type]
    )


async def new_family(store: Store, sid: str, *, sub: str = "alice", now: float = NOW) -> bytes:
    family = family_of(sid, sub=sub, now=now)
    await store.create_family(family, RefreshTokenRecord(h(f"{sid}/0"), sid, now))
    return h(f"{sid}/0")


async def rotate(
    store: Store, parent: bytes, child: bytes, *, now: float, grace: float = GRACE
) -> RotationResult:
    return await store.rotate(
        parent,
        RefreshTokenRecord(child, SID_OF.get(parent, ""), now),
        now=now,
        grace=grace,
        idle_expires_at=now + IDLE,
        revocation_until=now + 900.0,
    )


# -- families and refresh tokens -----------------------------------------------------------
async def test_create_and_get(store: Store) -> None:
    family = family_of("s1", user_agent="Firefox/140", ip="192.0.2.7", device="laptop")
    await store.create_family(family, RefreshTokenRecord(h("s1/0"), "s1", NOW))
    found = await get(store, h("s1/0"))
    assert found is not None
    record, got = found
    assert record == RefreshTokenRecord(h("s1/0"), "s1", NOW)
    assert got == family
    assert got.current_hash == h("s1/0") and got.generation == 0 and not got.revoked
    assert await store.get_family("s1") == family
    assert await get(store, h("nope")) is None
    assert await store.get_family("nope") is None


async def test_duplicate_family_is_refused(store: Store) -> None:
    await new_family(store, "s1")
    with pytest.raises(AlreadyExists):
        await store.create_family(family_of("s1"), RefreshTokenRecord(h("other"), "s1", NOW))


async def test_rotate_consumes_parent_and_inserts_child(store: Store) -> None:
    t0 = await new_family(store, "s1")
    result = await rotate(store, t0, h("s1/1"), now=NOW + 60)
    assert result.outcome is RotationOutcome.ROTATED
    assert result.event is None
    fam = result.family
    assert fam is not None and fam.current_hash == h("s1/1") and fam.generation == 1
    assert fam.last_used_at == NOW + 60 and fam.idle_expires_at == NOW + 60 + IDLE
    assert await store.get_family("s1") == fam
    parent = await get(store, t0)
    assert parent is not None
    assert parent[0].consumed_at == NOW + 60 and parent[0].successor_hash == h("s1/1")
    child = await get(store, h("s1/1"))
    assert child is not None
    assert child[0].parent_hash == t0 and child[0].consumed_at is None
    assert child[0].sid == "s1"


async def test_rotation_chain(store: Store) -> None:
    parent = await new_family(store, "s1")
    for gen in range(1, 6):
        child = h(f"s1/{gen}")
        result = await rotate(store, parent, child, now=NOW + gen * 100)
        assert result.outcome is RotationOutcome.ROTATED
        assert result.family is not None and result.family.generation == gen
        parent = child
    assert await store.revocation_cursor() == 0


async def test_grace_exactly_at_the_edge_returns_same_successor(store: Store) -> None:
    t0 = await new_family(store, "s1")
    await rotate(store, t0, h("s1/1"), now=NOW)
    cursor = await store.revocation_cursor()
    result = await rotate(store, t0, h("s1/1"), now=NOW + GRACE)
    assert result.outcome is RotationOutcome.GRACE
    fam = result.family
    assert fam is not None and fam.current_hash == h("s1/1") and fam.generation == 1
    assert fam.last_used_at == NOW + GRACE and not fam.revoked
    assert await store.revocation_cursor() == cursor
    assert (await store.get_family("s1")) == fam
    # the successor is still live and rotates normally
    onward = await rotate(store, h("s1/1"), h("s1/2"), now=NOW + GRACE)
    assert onward.outcome is RotationOutcome.ROTATED


async def test_just_after_grace_is_reuse_and_revocation_commits(store: Store) -> None:
    t0 = await new_family(store, "s1")
    await rotate(store, t0, h("s1/1"), now=NOW)
    late = NOW + GRACE + 0.001
    result = await rotate(store, t0, h("s1/1"), now=late)
    assert result.outcome is RotationOutcome.REUSED
    assert result.family is not None and result.family.revoked
    event = result.event
    assert event is not None
    assert (event.kind, event.value, event.until, event.at) == (
        RevocationKind.SID,
        "s1",
        late + 900.0,
        late,
    )
    # committed: visible through a fresh read and in the feed
    fam = await store.get_family("s1")
    assert fam is not None and fam.revoked_at == late
    assert fam.revoked_reason == "refresh_token_reuse"
    assert await store.revocations_after(0, now=late) == [event]
    assert await store.revocation_cursor() == event.seq
    # the live leaf is dead too
    after = await rotate(store, h("s1/1"), h("s1/2"), now=late)
    assert after.outcome is RotationOutcome.REVOKED


async def test_grace_with_a_different_successor_is_reuse(store: Store) -> None:
    t0 = await new_family(store, "s1")
    await rotate(store, t0, h("s1/1"), now=NOW)
    result = await rotate(store, t0, h("forged"), now=NOW + 1)
    assert result.outcome is RotationOutcome.REUSED


async def test_older_ancestor_is_reuse_even_inside_grace(store: Store) -> None:
    t0 = await new_family(store, "s1")
    await rotate(store, t0, h("s1/1"), now=NOW)
    await rotate(store, h("s1/1"), h("s1/2"), now=NOW + 1)
    result = await rotate(store, t0, h("s1/1"), now=NOW + 2)
    assert result.outcome is RotationOutcome.REUSED
    fam = await store.get_family("s1")
    assert fam is not None and fam.revoked


async def test_grace_zero_disables_replay(store: Store) -> None:
    t0 = await new_family(store, "s1")
    await rotate(store, t0, h("s1/1"), now=NOW, grace=0)
    result = await rotate(store, t0, h("s1/1"), now=NOW, grace=0)
    assert result.outcome is RotationOutcome.REUSED


async def test_not_found_and_revoked(store: Store) -> None:
    unknown = await rotate(store, h("unknown"), h("x"), now=NOW)
    assert unknown.outcome is RotationOutcome.NOT_FOUND and unknown.family is None
    t0 = await new_family(store, "s1")
    await store.revoke_family("s1", now=NOW, reason="logout", until=UNTIL)
    cursor = await store.revocation_cursor()
    result = await rotate(store, t0, h("s1/1"), now=NOW + 1)
    assert result.outcome is RotationOutcome.REVOKED
    assert result.family is not None and result.family.revoked_reason == "logout"
    assert await store.revocation_cursor() == cursor  # no second event
    assert await get(store, h("s1/1")) is None


# -- concurrency: barrier-released racers over two store instances -------------------------
async def _race(factory: StoreFactory, n: int, grace: float, round_: int) -> list[RotationOutcome]:
    first, second = await factory(), await factory()
    sid = f"race{round_}"
    t0 = await new_family(first, sid)
    child = h(f"{sid}/1")  # derived deterministically from the parent in real life
    barrier = asyncio.Barrier(n)

    async def racer(i: int) -> RotationOutcome:
        await barrier.wait()
        result = await rotate(first if i % 2 else second, t0, child, now=NOW + 1, grace=grace)
        return result.outcome

    outcomes = await asyncio.gather(*(racer(i) for i in range(n)))
    parent = await get(first, t0)
    assert parent is not None and parent[0].successor_hash == child
    fam = await second.get_family(sid)
    assert fam is not None and fam.generation == 1 and fam.current_hash == child
    assert await get(first, child) is not None
    return list(outcomes)


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_refresh_inside_grace_has_one_successor(
    store_factory: StoreFactory, round_: int
) -> None:
    outcomes = Counter(await _race(store_factory, 50, GRACE, round_))
    assert outcomes == {RotationOutcome.ROTATED: 1, RotationOutcome.GRACE: 49}


async def test_concurrent_refresh_without_grace_revokes_once(store_factory: StoreFactory) -> None:
    outcomes = Counter(await _race(store_factory, 50, 0.0, 0))
    # the winner rotates, the first loser detects reuse, everyone after sees a revoked family
    assert outcomes == {
        RotationOutcome.ROTATED: 1,
        RotationOutcome.REUSED: 1,
        RotationOutcome.REVOKED: 48,
    }
    store = await store_factory()
    events = await store.revocations_after(0, now=NOW)
    assert [(e.kind, e.value) for e in events] == [(RevocationKind.SID, "race0")]


async def test_second_instance_sees_committed_rotation(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    t0 = await new_family(a, "s1")
    assert (await rotate(a, t0, h("s1/1"), now=NOW)).outcome is RotationOutcome.ROTATED
    assert (await rotate(b, t0, h("s1/1"), now=NOW + 1)).outcome is RotationOutcome.GRACE
    onward = await rotate(b, h("s1/1"), h("s1/2"), now=NOW + 2)
    assert onward.outcome is RotationOutcome.ROTATED


# -- revocation ----------------------------------------------------------------------------
async def test_revoke_family(store: Store) -> None:
    await new_family(store, "s1")
    event = await store.revoke_family("s1", now=NOW, reason="logout", until=UNTIL)
    assert event is not None
    assert (event.kind, event.value, event.until, event.at) == (
        RevocationKind.SID,
        "s1",
        UNTIL,
        NOW,
    )
    fam = await store.get_family("s1")
    assert fam is not None and fam.revoked_at == NOW and fam.revoked_reason == "logout"
    assert await store.revoke_family("s1", now=NOW + 1, reason="again", until=UNTIL) is None
    assert await store.revoke_family("nope", now=NOW, reason="logout", until=UNTIL) is None
    assert await store.revocations_after(0, now=NOW) == [event]


async def test_revoke_subject(store: Store) -> None:
    for sid in ("a3", "a1", "a2"):
        await new_family(store, sid, sub="alice")
    await new_family(store, "b1", sub="bob")
    first = await store.revoke_family("a2", now=NOW, reason="logout", until=UNTIL)
    assert first is not None
    events = await store.revoke_subject("alice", now=NOW + 5, until=UNTIL + 5)
    assert [(e.kind, e.value) for e in events] == [
        (RevocationKind.SID, "a1"),
        (RevocationKind.SID, "a3"),
        (RevocationKind.SUB, "alice"),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and seqs[0] > first.seq and len(set(seqs)) == 3
    assert all(e.at == NOW + 5 and e.until == UNTIL + 5 for e in events)
    assert await store.list_families("alice") == []
    assert len(await store.list_families("alice", include_revoked=True)) == 3
    bob = await store.get_family("b1")
    assert bob is not None and not bob.revoked
    # a subject without sessions still gets its watermark event
    none = await store.revoke_subject("carol", now=NOW, until=UNTIL)
    assert [(e.kind, e.value) for e in none] == [(RevocationKind.SUB, "carol")]


async def test_list_families_newest_first(store: Store) -> None:
    for i, sid in enumerate(["old", "mid", "new"]):
        await new_family(store, sid, now=NOW + i)
    await new_family(store, "other", sub="bob")
    listed = await store.list_families("alice")
    assert [f.sid for f in listed] == ["new", "mid", "old"]
    assert await store.list_families("nobody") == []


async def test_feed_order_until_filter_and_cursor(store: Store) -> None:
    assert await store.revocation_cursor() == 0
    assert await store.revocations_after(0, now=NOW) == []
    e1 = await store.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 10)
    e2 = await store.add_revocation(RevocationKind.JTI, "j2", now=NOW, until=NOW + 100)
    e3 = await store.add_revocation(RevocationKind.SUB, "alice", now=NOW, until=NOW + 50)
    assert e1.seq < e2.seq < e3.seq
    assert await store.revocation_cursor() == e3.seq
    assert await store.revocations_after(0, now=NOW) == [e1, e2, e3]
    assert await store.revocations_after(e1.seq, now=NOW) == [e2, e3]
    assert await store.revocations_after(0, now=NOW, limit=2) == [e1, e2]
    assert await store.revocations_after(e3.seq, now=NOW) == []
    # until is exclusive: an event is gone once now >= until
    assert await store.revocations_after(0, now=NOW + 10) == [e2, e3]
    assert await store.revocations_after(0, now=NOW + 60) == [e2]


async def test_wait_revocations(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    assert await a.wait_revocations(0, now=lambda: NOW, timeout=0.05) == []
    e1 = await b.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=UNTIL)
    assert await a.wait_revocations(0, now=lambda: NOW, timeout=5) == [e1]

    async def later() -> None:
        await asyncio.sleep(0.05)  # let the waiter block first
        await b.add_revocation(RevocationKind.SID, "s9", now=NOW, until=UNTIL)

    task = asyncio.create_task(later())
    events = await a.wait_revocations(e1.seq, now=lambda: NOW, timeout=5)
    await task
    assert [(e.kind, e.value) for e in events] == [(RevocationKind.SID, "s9")]


# -- retention -----------------------------------------------------------------------------
async def test_purge_bounds(store: Store) -> None:
    margin = 86_400.0
    now = NOW + ABSOLUTE + margin
    cutoff = now - margin

    async def create(sid: str, expires_at: float, idle_expires_at: float) -> bytes:
        family = family_of(sid)
        family.expires_at, family.idle_expires_at = expires_at, idle_expires_at
        await store.create_family(family, RefreshTokenRecord(h(f"{sid}/0"), sid, NOW))
        return h(f"{sid}/0")

    await create("abs_edge", cutoff, cutoff + 1_000)  # absolute end == cutoff: purged
    t = await create("idle_edge", cutoff + 1_000, cutoff + 1_000)
    await rotate(store, t, h("idle_edge/1"), now=cutoff - IDLE)  # idle end -> cutoff: purged
    await create("kept", cutoff + 1, cutoff + 1)  # one second short: kept
    old = await store.add_revocation(RevocationKind.JTI, "gone", now=NOW, until=now)
    live = await store.add_revocation(RevocationKind.JTI, "live", now=NOW, until=now + 1)
    counts = await store.purge(now=now, margin=margin)
    assert (counts.families, counts.refresh_tokens, counts.revocations) == (2, 3, 1)
    assert await store.get_family("abs_edge") is None
    assert await get(store, h("abs_edge/0")) is None
    assert await store.get_family("idle_edge") is None
    assert await get(store, h("idle_edge/1")) is None
    assert await store.get_family("kept") is not None
    assert await get(store, h("kept/0")) is not None
    assert await store.revocations_after(0, now=NOW) == [live]
    # the cursor never goes backwards, even when events are purged
    assert await store.revocation_cursor() == live.seq > old.seq
    again = await store.purge(now=now, margin=margin)
    assert (again.families, again.refresh_tokens, again.revocations) == (0, 0, 0)
    later = await store.add_revocation(RevocationKind.JTI, "next", now=now, until=now + 9)
    assert later.seq > live.seq


# -- keys, secrets, users, clients ---------------------------------------------------------
async def test_keys_blob(store: Store) -> None:
    assert await store.load_keys() is None
    await store.save_keys(b"\x00blob-1")
    assert await store.load_keys() == b"\x00blob-1"
    await store.save_keys(b"blob-2")
    assert await store.load_keys() == b"blob-2"


async def test_secret_first_writer_wins(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    calls: list[int] = []

    def factory() -> bytes:
        calls.append(1)
        return b"s" * 32 if len(calls) == 1 else b"t" * 32

    assert await a.get_or_create_secret("grace", factory) == b"s" * 32
    assert await b.get_or_create_secret("grace", factory) == b"s" * 32
    assert calls == [1]
    assert await b.get_or_create_secret("other", lambda: b"o") == b"o"


async def test_users_crud(store: Store) -> None:
    alice = User("alice", "$argon2id$x", NOW, attributes={"email": "a@example.org", "n": 1})
    await store.create_user(alice)
    await store.create_user(User("bob", "$argon2id$y", NOW, is_admin=True))
    with pytest.raises(AlreadyExists):
        await store.create_user(User("alice", "other", NOW))
    assert await store.get_user("alice") == alice
    assert await store.get_user("nobody") is None
    alice.disabled = True
    alice.attributes["n"] = 2
    await store.update_user(alice)
    got = await store.get_user("alice")
    assert got is not None and got.disabled and got.attributes == {"email": "a@example.org", "n": 2}
    assert [u.username for u in await store.list_users()] == ["alice", "bob"]
    assert (await store.list_users())[1].is_admin


async def test_updating_an_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        await store.update_user(User("nobody", "$argon2id$x", NOW))
    assert (info.value.status_code, info.value.error) == (404, "not_found")
    assert await store.get_user("nobody") is None


async def test_duplicates_are_already_exists_409(store: Store) -> None:
    await store.create_user(User("carol", "$argon2id$x", NOW))
    with pytest.raises(AlreadyExists) as info:
        await store.create_user(User("carol", "$argon2id$y", NOW))
    assert (info.value.status_code, info.value.error) == (409, "already_exists")


async def test_delete_user_removes_the_record_once(store: Store) -> None:
    await store.create_user(User("carol", "$argon2id$x", NOW))
    await store.create_user(User("dave", "$argon2id$y", NOW))
    assert await store.delete_user("carol") is True
    assert await store.get_user("carol") is None
    assert [u.username for u in await store.list_users()] == ["dave"]
    assert await store.delete_user("carol") is False
    await store.create_user(User("carol", "$argon2id$z", NOW))  # the name is free again
    assert (await store.get_user("carol")) is not None


async def test_clients_crud(store: Store) -> None:
    web = Client("web", NOW)
    svc = Client(
        "svc",
        NOW,
        secret_hash="$argon2id$z",
        grants=("client_credentials", "refresh_token"),
        scopes=("read", "write"),
        name="Service",
    )
    await store.create_client(web)
    await store.create_client(svc)
    with pytest.raises(AlreadyExists):
        await store.create_client(Client("web", NOW + 1))
    got = await store.get_client("web")
    assert got == web and got.public
    assert await store.get_client("svc") == svc
    assert await store.get_client("nope") is None
    assert [c.client_id for c in await store.list_clients()] == ["svc", "web"]


async def test_user_roles_and_client_resources_round_trip(store: Store) -> None:
    await store.create_user(User("carol", "$argon2id$x", NOW, roles=("clerk", "manager")))
    got = await store.get_user("carol")
    assert got is not None and got.roles == ("clerk", "manager")
    got.roles = ()
    await store.update_user(got)
    assert (await store.get_user("carol")).roles == ()  # type: ignore[union-attr]
    spa = Client("spa", NOW, scopes=("orders:read",), resources=("https://orders.example",))
    await store.create_client(spa)
    assert await store.get_client("spa") == spa
    spa.resources = ("https://orders.example", "https://billing.example")
    spa.scopes = ("orders:read", "billing:read")
    await store.update_client(spa)
    assert await store.get_client("spa") == spa
    with pytest.raises(NotFound):
        await store.update_client(Client("nope", NOW))


async def test_resources_crud(store: Store) -> None:
    key = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}
    orders = Resource(
        "https://orders.example",
        "Orders API",
        NOW,
        scopes={"orders:read": "read orders", "orders:write": "place orders"},
        default_scopes=("orders:read",),
        access_token_ttl=300,
        encryption_key=key,
    )
    await store.create_resource(orders)
    await store.create_resource(Resource("api", "legacy", NOW))
    with pytest.raises(ConfigurationError):
        await store.create_resource(Resource("api", "again", NOW))
    assert await store.get_resource("https://orders.example") == orders
    assert await store.get_resource("nope") is None
    assert [r.identifier for r in await store.list_resources()] == [
        "api",
        "https://orders.example",
    ]
    orders.scopes["orders:delete"] = "cancel orders"
    orders.access_token_ttl = None
    orders.encryption_key = None
    await store.update_resource(orders)
    assert await store.get_resource("https://orders.example") == orders
    with pytest.raises(ConfigurationError):
        await store.update_resource(Resource("nope", "x", NOW))
    assert await store.delete_resource("api")
    assert not await store.delete_resource("api")
    assert [r.identifier for r in await store.list_resources()] == ["https://orders.example"]


async def test_roles_crud(store: Store) -> None:
    clerk = Role("clerk", NOW, scopes=("orders:read", "orders:write"), description="front desk")
    await store.create_role(clerk)
    await store.create_role(Role("admin", NOW, scopes=("admin",)))
    with pytest.raises(ConfigurationError):
        await store.create_role(Role("clerk", NOW))
    assert await store.get_role("clerk") == clerk
    assert await store.get_role("nope") is None
    clerk.scopes = ("orders:read",)
    await store.update_role(clerk)
    assert await store.get_role("clerk") == clerk
    with pytest.raises(ConfigurationError):
        await store.update_role(Role("nope", NOW))
    assert [r.name for r in await store.list_roles()] == ["admin", "clerk"]
    assert await store.delete_role("admin")
    assert not await store.delete_role("admin")
    assert [r.name for r in await store.list_roles()] == ["clerk"]


async def test_ping(store: Store) -> None:
    await store.ping()


# -- DPoP (RFC 9449) -------------------------------------------------------------------------
async def test_family_keeps_its_dpop_binding(store: Store) -> None:
    family = family_of("bound", dpop_jkt="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    await store.create_family(family, RefreshTokenRecord(h("bound/0"), "bound", NOW))
    got = await store.get_family("bound")
    assert got is not None and got.dpop_jkt == family.dpop_jkt
    assert (
        await rotate(store, h("bound/0"), h("bound/1"), now=NOW)
    ).outcome is RotationOutcome.ROTATED
    found = await get(store, h("bound/1"))
    assert found is not None and found[1].dpop_jkt == family.dpop_jkt
    await new_family(store, "unbound")
    unbound = await store.get_family("unbound")
    assert unbound is not None and unbound.dpop_jkt is None


async def test_client_dpop_requirement_and_update(store: Store) -> None:
    await store.create_client(Client("spa", NOW, dpop_bound_access_tokens=True))
    got = await store.get_client("spa")
    assert got is not None and got.dpop_bound_access_tokens
    got.dpop_bound_access_tokens = False
    got.scopes = ("read",)
    await store.update_client(got)
    again = await store.get_client("spa")
    assert again == got and not again.dpop_bound_access_tokens
    with pytest.raises(NotFound):
        await store.update_client(Client("nope", NOW))


async def test_client_disable_previous_secret_and_delete(store: Store) -> None:
    await store.create_client(Client("svc", NOW, secret_hash="sha256$new"))
    got = await store.get_client("svc")
    assert got is not None and not got.disabled and got.previous_secret_hash is None
    got.disabled = True
    got.previous_secret_hash = "sha256$old"
    got.previous_secret_expires_at = NOW + 3600
    await store.update_client(got)
    assert await store.get_client("svc") == got
    assert await store.delete_client("svc") is True
    assert await store.get_client("svc") is None
    assert [c.client_id for c in await store.list_clients()] == []
    assert await store.delete_client("svc") is False
    await store.create_client(Client("svc", NOW))  # the id can be registered again


async def test_dpop_jti_is_accepted_once_until_it_expires(store: Store) -> None:
    assert await store.dpop_jti_seen("k1", now=NOW, until=NOW + 60) is False
    assert await store.dpop_jti_seen("k1", now=NOW + 59, until=NOW + 119) is True
    assert await store.dpop_jti_seen("k2", now=NOW + 1, until=NOW + 61) is False
    await store.purge(now=NOW + 61, margin=0)
    assert await store.dpop_jti_seen("k1", now=NOW + 61, until=NOW + 121) is False


async def test_dpop_jti_replay_is_seen_by_every_instance(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    assert await a.dpop_jti_seen("shared", now=NOW, until=NOW + 60) is False
    assert await b.dpop_jti_seen("shared", now=NOW, until=NOW + 60) is True


async def test_concurrent_dpop_jti_has_one_winner(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(4)]
    seen = await asyncio.gather(
        *(s.dpop_jti_seen("race", now=NOW, until=NOW + 60) for s in stores for _ in range(4))
    )
    assert Counter(seen) == {True: 15, False: 1}


async def test_rate_counter_is_a_moving_window_that_never_overruns(store: Store) -> None:
    assert [await store.rate_hit("k", now=NOW + i, window=60, limit=3) for i in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert await store.rate_window("k", now=NOW + 4, window=60) == (3, NOW + 60)
    assert await store.rate_hit("k", now=NOW + 60.5, window=60, limit=3) is True  # NOW left
    assert await store.rate_hit("other", now=NOW, window=60, limit=1) is True
    await store.rate_clear("k")
    assert await store.rate_window("k", now=NOW + 61, window=60) == (0, NOW + 61)
    await store.purge(now=NOW + 1000, margin=0)  # SQL deletes old attempts; Redis expires them
    assert await store.rate_window("other", now=NOW + 1000, window=60) == (0, NOW + 1000)


async def test_rate_counter_holds_under_concurrent_hits_from_every_instance(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory() for _ in range(3)]
    hits = await asyncio.gather(
        *[s.rate_hit("shared", now=NOW, window=60, limit=5) for s in stores for _ in range(6)]
    )
    assert hits.count(True) == 5

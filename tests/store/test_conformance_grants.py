"""The grant-record part of the Store contract (sign-in sessions, codes, consents, device
authorizations, outbound deliveries) and the client registration fields, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.stores import BACKENDS, StoreFactory, open_store_factory
from tokenward.store import Client, Store
from tokenward.store.base import GrantRecord

NOW = 1_800_000_000.0


@pytest.fixture(params=[*BACKENDS, "redis-cluster"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Every backend, and the Redis store on a real local Redis Cluster."""
    async for factory in open_store_factory(request.param, request, tmp_path):
        yield factory


def rec(
    key: str, *, owner: str = "alice", exp: float | None = NOW + 60, **data: object
) -> GrantRecord:
    return GrantRecord("code", key, owner, dict(data) or {"n": 1}, exp)


async def test_client_registration_fields_round_trip(store: Store) -> None:
    spa = Client(
        "spa",
        NOW,
        grants=("authorization_code", "refresh_token"),
        redirect_uris=("https://app.example/cb", "http://127.0.0.1/cb", "com.example.app:/cb"),
        post_logout_redirect_uris=("https://app.example/bye",),
        first_party=True,
        backchannel_logout_uri="https://app.example/bcl",
    )
    await store.create_client(spa)
    assert await store.get_client("spa") == spa
    plain = Client("plain", NOW)
    await store.create_client(plain)
    got = await store.get_client("plain")
    assert got is not None and got.redirect_uris == () and not got.first_party
    assert got.backchannel_logout_uri is None


async def test_record_create_get_and_duplicate(store: Store) -> None:
    assert await store.create_record(rec("k1", a="b"), now=NOW)
    assert not await store.create_record(rec("k1", a="c"), now=NOW)  # exists
    got = await store.get_record("code", "k1", now=NOW)
    assert got is not None and got.data == {"a": "b"} and got.version == 0
    assert got.owner == "alice" and got.expires_at == NOW + 60
    assert await store.get_record("code", "nope", now=NOW) is None
    assert await store.get_record("consent", "k1", now=NOW) is None  # kinds are separate


async def test_record_expired_is_gone_and_can_be_replaced(store: Store) -> None:
    assert await store.create_record(rec("k1", exp=NOW + 10), now=NOW)
    assert await store.get_record("code", "k1", now=NOW + 10) is None
    assert await store.list_records("code", "alice", now=NOW + 10) == []
    assert not await store.update_record(
        GrantRecord("code", "k1", "alice", {"x": 1}, NOW + 99, 0), now=NOW + 10
    )
    assert await store.create_record(rec("k1", exp=NOW + 100, x=2), now=NOW + 10)
    got = await store.get_record("code", "k1", now=NOW + 10)
    assert got is not None and got.data == {"x": 2}


async def test_record_without_expiry_is_kept(store: Store) -> None:
    assert await store.create_record(rec("forever", exp=None), now=NOW)
    got = await store.get_record("code", "forever", now=NOW + 10**8)
    assert got is not None and got.expires_at is None
    assert await store.purge_records(now=NOW + 10**8) == 0
    assert await store.get_record("code", "forever", now=NOW + 10**8) is not None


async def test_record_compare_and_set_bumps_version(store: Store) -> None:
    await store.create_record(rec("k1"), now=NOW)
    got = await store.get_record("code", "k1", now=NOW)
    assert got is not None
    got.data = {"used": True}
    assert await store.update_record(got, now=NOW)
    assert not await store.update_record(got, now=NOW)  # stale version
    again = await store.get_record("code", "k1", now=NOW)
    assert again is not None and again.version == 1 and again.data == {"used": True}


async def test_record_single_use_has_one_winner_under_concurrency(
    store_factory: StoreFactory,
) -> None:
    first = await store_factory()
    await first.create_record(rec("race"), now=NOW)
    stores = [first, await store_factory(), await store_factory()]
    seen = [await s.get_record("code", "race", now=NOW) for s in stores for _ in range(3)]

    async def consume(s: Store, r: GrantRecord | None) -> bool:
        assert r is not None
        r.data = {"used": True}
        return await s.update_record(r, now=NOW)

    results = await asyncio.gather(*(consume(stores[i % 3], r) for i, r in enumerate(seen)))
    assert sum(results) == 1


async def test_record_delete_and_list_by_owner(store: Store) -> None:
    await store.create_record(rec("b"), now=NOW)
    await store.create_record(rec("a"), now=NOW)
    await store.create_record(rec("c", owner="bob"), now=NOW)
    assert [r.key for r in await store.list_records("code", "alice", now=NOW)] == ["a", "b"]
    assert await store.delete_record("code", "a")
    assert not await store.delete_record("code", "a")
    assert [r.key for r in await store.list_records("code", "alice", now=NOW)] == ["b"]
    assert [r.key for r in await store.list_records("code", "bob", now=NOW)] == ["c"]


async def test_record_purge_deletes_only_expired(store: Store) -> None:
    await store.create_record(rec("old", exp=NOW + 1), now=NOW)
    await store.create_record(rec("new", exp=NOW + 100), now=NOW)
    gone = await store.purge_records(now=NOW + 50)
    assert gone == 1
    assert await store.get_record("code", "new", now=NOW + 50) is not None
    assert [r.key for r in await store.list_records("code", "alice", now=NOW + 50)] == ["new"]

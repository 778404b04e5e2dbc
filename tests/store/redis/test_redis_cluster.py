"""Redis Cluster specifics of the ``redis+cluster://`` store: the durability of revocations.

A revocation is acknowledged only once a replica of the master that took it has it (``WAIT 1``
on the connection that wrote it). Shown on the session's local cluster (3 masters + 3
replicas) by pausing (SIGSTOP) the one replica of one master: a revocation written there is
refused (``StoreUnavailable``: the server answers 503) while one written to another master is
acknowledged. A ``WAIT`` sent on any other connection than the writing one would count the
paused replica (still connected) and acknowledge; one sent to another node would count that
node's replica. The contract itself runs on the cluster in tests/store/test_conformance.py.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from support.env import require_module
from support.stores import REDIS_URL, check_script_slots, redis_problem
from tokenward.errors import ConfigurationError, StoreUnavailable
from tokenward.store import store_from_url
from tokenward.store.base import Family, RefreshTokenRecord, RevocationKind, RotationOutcome

require_module("redis")
from tokenward.store.redis import RedisClusterStore, RedisStore  # noqa: E402

pytestmark = pytest.mark.services

NOW = 1_800_000_000.0


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


async def _start(store: RedisStore, sid: str) -> None:
    fam = Family(
        sid=sid,
        sub="alice",
        client_id="web",
        scope="read",
        created_at=NOW,
        last_used_at=NOW,
        expires_at=NOW + 1000,
        idle_expires_at=NOW + 100,
        current_hash=h(f"{sid}:0"),
    )
    await store.create_family(fam, RefreshTokenRecord(fam.current_hash, sid, NOW))


def _master_port(store: RedisClusterStore, key: str) -> int:
    port: int = store._r.get_node_from_key(key).port  # type: ignore[attr-defined]
    return port


def _sid_on(store: RedisClusterStore, master: int, *, other_than: bool = False) -> str:
    """A sid whose family lives on ``master`` (or, ``other_than``, on another master)."""
    for i in range(1000):
        sid = f"sid{i}"
        if (_master_port(store, store.family_key(sid)) == master) != other_than:
            return sid
    raise LookupError("no such sid")  # pragma: no cover - 16 shards over 3 masters


@pytest.fixture
async def cstore(redis_cluster: Any) -> AsyncIterator[RedisClusterStore]:
    store = RedisClusterStore(
        redis_cluster.url, prefix=f"twwait{uuid.uuid4().hex[:10]}", wait_timeout=0.3
    )
    check_script_slots(store)
    await store.open()
    try:
        yield store
    finally:
        await store.drop()
        await store.close()


@pytest.fixture
def paused(redis_cluster: Any) -> Iterator[list[int]]:
    """The ports of the nodes a test paused; resumed after it, whatever happened."""
    ports: list[int] = []
    try:
        yield ports
    finally:
        for port in ports:
            redis_cluster.resume(port)


def test_cluster_store_waits_for_one_replica_by_default_and_takes_url_options() -> None:
    s = store_from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000?prefix=tw")
    assert isinstance(s, RedisClusterStore) and s.wait_replicas == 1 and s.wait_timeout == 0.5
    s = store_from_url("redis+cluster://10.0.0.1:7000?wait_replicas=2&wait_timeout=0.25&prefix=x")
    assert isinstance(s, RedisClusterStore)
    assert (s.wait_replicas, s.wait_timeout, s.prefix) == (2, 0.25, "x")
    assert "wait" not in s.url  # not passed on to redis-py
    assert isinstance(single := store_from_url("redis://h:6379/0"), RedisStore)
    assert single.wait_replicas == 0  # a single node: what it has (AOF, min-replicas-to-write)
    for bad in ("wait_replicas=x", "wait_replicas=-1", "wait_timeout=0", "wait_timeout=5"):
        with pytest.raises(ConfigurationError, match="wait_"):
            store_from_url(f"redis+cluster://10.0.0.1:7000?{bad}", timeout=2.0)


async def test_a_revocation_no_replica_acknowledged_is_refused_on_a_single_node() -> None:
    """``wait_replicas=1`` against a Redis without replicas: every revocation fails closed
    (``WAIT`` answers 0), naming why; a rotation (not a revocation) does not wait."""
    if (problem := redis_problem()) is not None:
        pytest.skip(problem)
    store = RedisStore(REDIS_URL, prefix=f"twwait{uuid.uuid4().hex[:10]}", wait_replicas=1)
    store.wait_timeout = 0.05
    await store.open()
    try:
        await _start(store, "s1")
        with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
            await store.revoke_family("s1", now=NOW, reason="logout", until=NOW + 60)
        with pytest.raises(StoreUnavailable, match="not acknowledged"):
            await store.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 60)
        fam = await store.get_family("s1")
        assert fam is not None and fam.revoked  # written, only not acknowledged
    finally:
        await store.drop()
        await store.close()


async def test_wait_counts_the_replica_of_the_master_that_took_the_revocation(
    cstore: RedisClusterStore, redis_cluster: Any, paused: list[int]
) -> None:
    feed_master = _master_port(cstore, cstore.stream_key)
    # a master that holds neither the feed nor (below) the second family
    master = next(p for p in redis_cluster.masters() if p != feed_master)
    here, elsewhere = _sid_on(cstore, master), _sid_on(cstore, master, other_than=True)
    for sid in (here, elsewhere):
        await _start(cstore, sid)
    cursor = await cstore.revocation_cursor()
    # the replica has acknowledged writes before it is paused (an idle new replica has
    # acknowledged nothing, and a WAIT on a connection that wrote nothing would count it)
    await cstore._fence(cstore.family_key(here))

    replica = redis_cluster.replica_of(master)
    redis_cluster.pause(replica)
    paused.append(replica)

    with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
        await cstore.revoke_family(here, now=NOW, reason="logout", until=NOW + 60)
    # the other masters' replicas are live: a revocation written there is acknowledged
    event = await cstore.revoke_family(elsewhere, now=NOW, reason="logout", until=NOW + 60)
    assert event is not None and event.value == elsewhere
    jti = await cstore.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 60)
    assert jti.seq > event.seq

    redis_cluster.resume(replica)
    paused.remove(replica)
    # the retry (the family is already revoked on the master) is acknowledged once the replica
    # has the first attempt's write, and its event reaches the feed
    for _ in range(50):
        try:
            await cstore.revoke_family(here, now=NOW, reason="logout", until=NOW + 60)
            break
        except StoreUnavailable:
            continue  # the replica is catching up (each try waits up to wait_timeout)
    else:
        pytest.fail("the revocation was never acknowledged after the replica came back")
    events = await cstore.revocations_after(cursor, now=NOW)
    assert {e.value for e in events} == {here, elsewhere, "j1"}


async def test_reuse_detection_waits_for_the_replica_too(
    cstore: RedisClusterStore, redis_cluster: Any, paused: list[int]
) -> None:
    """A detected reuse revokes the family: answered only once the revocation is on a
    replica (here refused, the replica of the family's master being paused)."""
    feed_master = _master_port(cstore, cstore.stream_key)
    master = next(p for p in redis_cluster.masters() if p != feed_master)
    sid = _sid_on(cstore, master)
    await _start(cstore, sid)
    child = RefreshTokenRecord(h(f"{sid}:1"), sid, NOW + 1, h(f"{sid}:0"))
    kw: dict[str, Any] = {"grace": 0.0, "idle_expires_at": NOW + 100, "revocation_until": NOW + 60}
    rotated = await cstore.rotate(h(f"{sid}:0"), child, now=NOW + 1, **kw)
    assert rotated.outcome is RotationOutcome.ROTATED
    await cstore._fence(cstore.family_key(sid))  # the replica has acknowledged writes

    replica = redis_cluster.replica_of(master)
    redis_cluster.pause(replica)
    paused.append(replica)
    again = RefreshTokenRecord(h(f"{sid}:x"), sid, NOW + 2, h(f"{sid}:0"))
    with pytest.raises(StoreUnavailable, match="not acknowledged"):
        await cstore.rotate(h(f"{sid}:0"), again, now=NOW + 2, **kw)
    fam = await cstore.get_family(sid)
    assert fam is not None and fam.revoked  # fail closed: revoked, never a success


async def test_the_login_limiter_counts_in_the_cluster_for_every_instance(
    redis_cluster: Any,
) -> None:
    """Two server instances (two throttles over two cluster stores): the account's 3/minute
    holds across them (counted by the store's one-slot script, not per process)."""
    from tokenward.errors import RateLimited
    from tokenward.server.ratelimit import STORE, LoginThrottle, storage_url_for

    assert storage_url_for(redis_cluster.url) == STORE
    prefix = f"twrate{uuid.uuid4().hex[:10]}"
    stores = [RedisClusterStore(redis_cluster.url, prefix=prefix) for _ in range(2)]
    for s in stores:
        check_script_slots(s)
        await s.open()
    try:
        throttles = [
            LoginThrottle(per_account="3/minute", storage_url=STORE, store=s) for s in stores
        ]
        out = []
        for i in range(6):
            t = throttles[i % 2]
            try:
                await t.check("alice", "203.0.113.5")
            except RateLimited:
                out.append("429")
                continue
            await t.failed("alice", "203.0.113.5")
            out.append("400")
        assert out == ["400", "400", "400", "429", "429", "429"]
    finally:
        await stores[0].drop()
        for s in stores:
            await s.close()


async def test_a_waited_revocation_loads_its_script_again_after_script_flush(
    cstore: RedisClusterStore,
) -> None:
    """The script runs in the pipeline that waits (not through redis-py's script object,
    which would reload it itself): after ``SCRIPT FLUSH`` on every node (or a failover to a
    replica that never loaded it) the revocation loads it and runs once."""
    from redis.asyncio.cluster import RedisCluster

    await _start(cstore, "s1")
    await cstore._r.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.ALL_NODES)
    event = await cstore.revoke_family("s1", now=NOW, reason="logout", until=NOW + 60)
    assert event is not None and event.value == "s1"
    await cstore._r.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.ALL_NODES)
    jti = await cstore.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 60)
    assert jti.seq == event.seq + 1
    events = await cstore.revocations_after(0, now=NOW)
    assert [e.value for e in events] == ["s1", "j1"]  # each once

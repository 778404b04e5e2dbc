"""Redis specifics of the ``redis://`` store (the contract itself: tests/store/test_conformance.py).

TTLs on every per-session key, stream ids and trimming, hash tags, script reload after
``SCRIPT FLUSH``, prefix isolation and cleanup, the blocking follower, error mapping.
Each test uses its own key prefix in database 15 and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from support.env import require_module, service_missing
from support.stores import REDIS_URL as URL
from support.stores import check_script_slots
from support.wait import HANG
from tokenward.errors import ConfigurationError, StoreUnavailable
from tokenward.store import store_from_url
from tokenward.store.base import Family, RefreshTokenRecord, RevocationKind, RotationOutcome

redis = require_module("redis")
from redis.crc import key_slot  # noqa: E402
from redis.exceptions import BusyLoadingError, ResponseError  # noqa: E402

from tokenward.store.redis import RedisStore  # noqa: E402
from tokenward.store.redis import scripts as lua  # noqa: E402
from tokenward.store.redis.store import SHARDS, shard_of  # noqa: E402

pytestmark = pytest.mark.services

NOW = 1_800_000_000.0
MARGIN = 50.0


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def family(
    sid: str, *, sub: str = "alice", absolute: float = 1000.0, idle: float = 100.0
) -> Family:
    return Family(
        sid=sid,
        sub=sub,
        client_id="web",
        scope="read",
        created_at=NOW,
        last_used_at=NOW,
        expires_at=NOW + absolute,
        idle_expires_at=NOW + idle,
        current_hash=h(f"{sid}:0"),
        user_agent="ua/1.0",
    )


async def _reachable() -> bool:
    probe = RedisStore(URL, prefix="twprobe", timeout=1.0)
    try:
        await probe.ping()
        return True
    except StoreUnavailable:
        return False
    finally:
        await probe.close()


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    if not await _reachable():
        service_missing(f"Redis unreachable at {URL}")
    s = RedisStore(URL, prefix=f"twr{uuid.uuid4().hex[:12]}", ttl_margin=MARGIN)
    await s.open()
    try:
        yield s
    finally:
        await s.drop()
        assert await _keys(s) == []
        await s.close()


async def _keys(s: RedisStore) -> list[str]:
    found: list[str] = []
    async for key in s._r.scan_iter(match=f"*{s.prefix}*", count=1000):
        found.append(key.decode())
    return sorted(found)


async def _start(s: RedisStore, sid: str = "s1", **kw: float) -> Family:
    fam = family(sid, **kw)
    await s.create_family(fam, RefreshTokenRecord(fam.current_hash, sid, NOW))
    return fam


async def _rotate(s: RedisStore, sid: str, n: int, now: float, idle: float = 100.0):  # type: ignore[no-untyped-def]
    parent, child = h(f"{sid}:{n}"), h(f"{sid}:{n + 1}")
    return await s.rotate(
        parent,
        RefreshTokenRecord(child, sid, now, parent),
        now=now,
        grace=10.0,
        idle_expires_at=now + idle,
        revocation_until=now + 900,
    )


# -- registry ------------------------------------------------------------------------------
def test_store_from_url_builds_a_redis_store() -> None:
    s = store_from_url("rediss://cache.example:6380/2", prefix="x", timeout=0.5)
    assert isinstance(s, RedisStore)
    assert (s.prefix, s.timeout) == ("x", 0.5)


def test_redis_prefix_separator_is_normalised() -> None:
    plain = RedisStore(URL, prefix="nu")
    for given in (RedisStore(URL, prefix="nu:"), store_from_url(URL + "?prefix=nu:")):
        assert isinstance(given, RedisStore) and given.prefix == "nu"
        assert given.token_index_key(b"\x01") == plain.token_index_key(b"\x01") == "nu:rt:01"
        assert given.family_key("s") == plain.family_key("s") == f"{{nu:s{shard_of('s')}}}:fam:s"
        assert given.subject_key("a") == plain.subject_key("a") == "{nu}:sub:a"


@pytest.mark.parametrize("prefix", ["", ":", "a{b", "a}b", "a b"])
def test_prefix_must_not_break_hash_tags(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(URL, prefix=prefix)


# -- TTLs ----------------------------------------------------------------------------------
async def test_every_session_key_expires_and_ttls_follow_use(store: RedisStore) -> None:
    await _start(store, "s1")  # idle deadline NOW+100, absolute NOW+1000
    r = store._r
    fam_key, tok_key = store.family_key("s1"), store.tokens_key("s1")
    sub_key = store.subject_key("alice")
    # family + tokens: min(absolute, idle) - now + margin = 150 s; subject: 1000 + 50
    assert 145 <= await r.ttl(fam_key) <= 150
    assert 145 <= await r.ttl(tok_key) <= 150
    assert 1045 <= await r.ttl(sub_key) <= 1050
    # tagged tokens are found through their family: no global token index is written
    assert not await r.exists(store.token_index_key(h("s1:0")))

    # a rotation 10 s later moves the idle deadline to NOW+10+500: the TTL is refreshed
    result = await _rotate(store, "s1", 0, NOW + 10, idle=500)
    assert result.outcome is RotationOutcome.ROTATED
    assert 545 <= await r.ttl(fam_key) <= 550
    assert 545 <= await r.ttl(tok_key) <= 550
    assert not await r.exists(store.token_index_key(h("s1:1")))

    await store.add_revocation(RevocationKind.JTI, "j1", now=NOW, until=NOW + 60)
    await store.revoke_family("s1", now=NOW + 20, reason="logout", until=NOW + 900)
    await store.save_keys(b"blob")
    # every key is either per-session (with a TTL) or one of the few global keys
    persistent = {f"{{{store.prefix}}}:{name}" for name in ("seq", "rev", "revexp", "keys")}
    persistent |= {store.deadline_key(n) for n in range(SHARDS)}
    persistent |= {store.outbox_key(n) for n in range(SHARDS)}
    for key in await _keys(store):
        ttl = await r.ttl(key)
        if key in persistent:
            assert ttl == -1, key
        else:
            assert ttl > 0, f"{key} has no TTL"


async def test_purge_deletes_dead_families_and_their_index_keys(store: RedisStore) -> None:
    await _start(store, "old", idle=10)
    await _start(store, "young", idle=10_000, absolute=20_000)
    await _rotate(store, "old", 0, NOW + 1, idle=10)
    counts = await store.purge(now=NOW + 100, margin=5)
    assert (counts.families, counts.refresh_tokens) == (1, 2)
    assert await store.get_family("old") is None
    assert await store.get_refresh_token(h("old:0"), sid="old") is None
    assert await store.get_family("young") is not None
    keys = await _keys(store)
    assert not [k for k in keys if "old" in k], keys
    assert await store._r.zrange(store.subject_key("alice"), 0, -1) == [b"young"]
    assert await store.purge(now=NOW + 100, margin=5) == type(counts)(0, 0, 0)


# -- the revocation stream -----------------------------------------------------------------
async def test_stream_ids_are_the_sequence_and_values_round_trip(store: RedisStore) -> None:
    at, until = NOW + 0.123456789, NOW + 900.000001
    e1 = await store.add_revocation(RevocationKind.JTI, "j1", now=at, until=until)
    e2 = await store.add_revocation(RevocationKind.SUB, "bob", now=at, until=until)
    assert (e1.seq, e2.seq) == (1, 2)
    entries = await store._r.xrange(store.stream_key)
    assert [i for i, _ in entries] == [b"1-0", b"2-0"]
    assert await store.revocations_after(0, now=NOW) == [e1, e2]
    assert await store.revocations_after(1, now=NOW) == [e2]
    assert await store.revocation_cursor() == 2


async def test_purge_trims_the_stream_exactly(store: RedisStore) -> None:
    # a long-lived event first, then short ones: MINID alone could not free the short ones
    untils = [NOW + 1000, NOW + 10, NOW + 10, NOW + 2000, NOW + 20, NOW + 5000]
    events = [
        await store.add_revocation(RevocationKind.JTI, f"j{i}", now=NOW, until=u)
        for i, u in enumerate(untils)
    ]
    counts = await store.purge(now=NOW + 30, margin=0)
    assert counts.revocations == 3
    assert await store._r.xlen(store.stream_key) == 3
    assert await store._r.zcard(f"{{{store.prefix}}}:revexp") == 3
    left = await store.revocations_after(0, now=NOW + 30)
    assert [e.seq for e in left] == [events[0].seq, events[3].seq, events[5].seq]
    # the expired prefix goes by MINID: after NOW+1000 the head is trimmed
    counts = await store.purge(now=NOW + 1500, margin=0)
    assert counts.revocations == 1
    first = await store._r.xrange(store.stream_key, count=1)
    assert first[0][0] == b"4-0"
    # the cursor survives trimming: new events continue the sequence
    e = await store.add_revocation(RevocationKind.JTI, "later", now=NOW, until=NOW + 9000)
    assert e.seq == len(untils) + 1


async def test_revocations_after_skips_expired_entries_across_batches(store: RedisStore) -> None:
    for i in range(5):
        await store.add_revocation(RevocationKind.JTI, f"dead{i}", now=NOW, until=NOW + 1)
    live = [
        await store.add_revocation(RevocationKind.JTI, f"live{i}", now=NOW, until=NOW + 900)
        for i in range(3)
    ]
    got = await store.revocations_after(0, now=NOW + 10, limit=2)
    assert got == live[:2]


async def test_follower_xread_block_wakes_on_a_revocation(store: RedisStore) -> None:
    follower = RedisStore(URL, prefix=store.prefix)
    try:
        cursor = await follower.revocation_cursor()
        waiter = asyncio.create_task(
            follower.wait_revocations(cursor, now=lambda: NOW, timeout=5.0)
        )
        await asyncio.sleep(0.05)  # let the follower block in XREAD (not waiting for time)
        # the blocked follower does not hold up ordinary calls on its own store
        await follower.ping()
        event = await store.add_revocation(RevocationKind.SID, "s9", now=NOW, until=NOW + 60)
        got = await asyncio.wait_for(waiter, 5.0)
        assert got == [event]
        # nothing new: returns [] once the wait is over, bounded
        started = time.monotonic()
        assert await follower.wait_revocations(event.seq, now=lambda: NOW, timeout=0.2) == []
        assert time.monotonic() - started < 0.2 + follower.timeout + HANG  # not hung
    finally:
        await follower.close()


# -- hash tags -----------------------------------------------------------------------------
def test_a_familys_keys_share_its_shards_slot_and_globals_share_another() -> None:
    s = RedisStore(URL, prefix="tw")
    for sid in ("sid-1", "a}b", "x{y"):
        n = shard_of(sid)
        slots = {
            key_slot(k.encode())
            for k in (s.family_key(sid), s.tokens_key(sid), s.deadline_key(n), s.outbox_key(n))
        }
        assert slots == {key_slot(f"tw:s{n}".encode())}, sid
    g = {
        key_slot(k.encode())
        for k in (s.stream_key, s.subject_key("alice"), "{tw}:seq", "{tw}:revexp", "{tw}:keys")
    }
    assert g == {key_slot(b"tw")}
    assert key_slot(b"tw") not in {key_slot(s.outbox_key(n).encode()) for n in range(SHARDS)}
    # the shards spread over the slot space (a cluster's masters each own a range of it)
    assert len({key_slot(s.outbox_key(n).encode()) for n in range(SHARDS)}) == SHARDS


async def test_every_script_touches_one_hash_slot(store: RedisStore) -> None:
    ran = check_script_slots(store)
    await _start(store, "s1")
    await _start(store, "s2")
    await _rotate(store, "s1", 0, NOW + 1)
    assert await store.get_refresh_token(h("s1:1"), sid="s1") is not None
    await _rotate(store, "s1", 0, NOW + 100)  # reuse: the revocation goes through the outbox
    await store.revoke_family("s2", now=NOW, reason="logout", until=NOW + 60)
    await _start(store, "s3")
    await store.revoke_subject("alice", now=NOW, until=NOW + 60)
    await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 60)
    await store.rate_hit("k", now=NOW, window=60, limit=5)
    await store.dpop_jti_seen("p", now=NOW, until=NOW + 60)
    await store.purge(now=NOW + 10_000, margin=0)
    assert set(ran) == set(lua.__all__)


# -- scripts -------------------------------------------------------------------------------
async def test_scripts_reload_after_script_flush(store: RedisStore) -> None:
    await _start(store, "s1")
    assert (await _rotate(store, "s1", 0, NOW + 1)).outcome is RotationOutcome.ROTATED
    await store._r.script_flush()
    assert (await _rotate(store, "s1", 1, NOW + 2)).outcome is RotationOutcome.ROTATED
    await store._r.script_flush()
    assert (await store.revoke_family("s1", now=NOW, reason="x", until=NOW + 60)) is not None


async def test_prefixes_isolate_stores(store: RedisStore) -> None:
    other = RedisStore(URL, prefix=f"{store.prefix}x")
    try:
        await _start(store, "s1")
        await store.add_revocation(RevocationKind.JTI, "j", now=NOW, until=NOW + 60)
        assert await other.get_family("s1") is None
        assert await other.get_refresh_token(h("s1:0"), sid="s1") is None
        assert await other.revocation_cursor() == 0
    finally:
        await other.drop()
        await other.close()


# -- failure mapping -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc",
    [
        ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
        BusyLoadingError("Redis is loading the dataset in memory"),
        ResponseError("CLUSTERDOWN The cluster is down"),
        ResponseError("READONLY You can't write against a read only replica."),
        ResponseError("MASTERDOWN Link with MASTER is down"),
    ],
)
async def test_server_states_that_mean_unavailable_fail_closed(exc: Exception) -> None:
    s = RedisStore(URL, prefix="twmap")

    async def boom() -> None:
        raise exc

    with pytest.raises(StoreUnavailable) as info:
        await s._call(boom, "rotate")
    assert "rotate" in str(info.value)


async def test_other_server_errors_are_not_disguised_as_outages() -> None:
    s = RedisStore(URL, prefix="twmap")

    async def boom() -> None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(ResponseError):
        await s._call(boom, "get_family")


async def test_refused_connection_fails_closed_within_the_timeout() -> None:
    s = RedisStore("redis://127.0.0.1:1/0", prefix="twx", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await s.rotate(
            h("x"),
            RefreshTokenRecord(h("y"), "s", NOW, h("x")),
            now=NOW,
            grace=0,
            idle_expires_at=NOW + 1,
            revocation_until=NOW + 1,
        )
    assert time.monotonic() - started < 0.5 + HANG  # bounded by the timeout, not hung
    await s.close()


def test_redis_py_retries_are_off() -> None:
    """A rotation whose reply was lost must not be re-sent (it would read as reuse)."""
    s = RedisStore(URL, prefix="twx")
    kwargs = s._r.connection_pool.connection_kwargs
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["socket_timeout"] == s.timeout


# -- the outbox ----------------------------------------------------------------------------
async def test_an_event_left_in_the_outbox_reaches_the_feed_once(store: RedisStore) -> None:
    """A writer that dies after its script (the revocation acknowledged by Redis) and before
    moving the event: the next feed read moves it; moving it again appends nothing."""
    await _start(store, "s1")
    n = shard_of("s1")
    entry = await store._script(
        "REVOKE_FAMILY",
        [store.family_key("s1"), store.outbox_key(n)],
        ["s1", repr(NOW), "logout", repr(NOW + 60)],
    )
    assert await store._r.xlen(store.stream_key) == 0  # not moved yet
    events = await store.revocations_after(0, now=NOW)
    assert [(e.kind, e.value, e.seq) for e in events] == [(RevocationKind.SID, "s1", 1)]
    assert await store._r.xlen(store.outbox_key(n)) == 0
    # a second mover that read the same entry before it left the outbox gets the same seq
    marker = f"{{{store.prefix}}}:moved:{n}:{entry.decode()}"
    again = await store._script(
        "MOVE_EVENT",
        [f"{{{store.prefix}}}:seq", store.stream_key, f"{{{store.prefix}}}:revexp", marker],
        ["sid", "s1", repr(NOW + 60), repr(NOW), 60],
    )
    assert int(again) == 1
    assert await store._r.xlen(store.stream_key) == 1
    assert await store.revocation_cursor() == 1


async def test_a_writer_whose_event_another_mover_took_reports_its_seq(
    store: RedisStore,
) -> None:
    await _start(store, "s1")
    other = RedisStore(URL, prefix=store.prefix)
    real = store._move

    async def raced(shard: int) -> dict[str, int]:
        await other._sweep()  # another process's feed read moves the event first
        return await real(shard)

    store._move = raced  # type: ignore[method-assign]
    try:
        event = await store.revoke_family("s1", now=NOW, reason="logout", until=NOW + 60)
    finally:
        await other.close()
    assert event is not None and event.seq == 1
    assert [e.seq for e in await store.revocations_after(0, now=NOW)] == [1]


async def test_a_follower_moves_an_outbox_event_left_behind(store: RedisStore) -> None:
    await _start(store, "s1")
    n = shard_of("s1")
    await store._script(
        "REVOKE_FAMILY",
        [store.family_key("s1"), store.outbox_key(n)],
        ["s1", repr(NOW), "logout", repr(NOW + 60)],
    )
    follower = RedisStore(URL, prefix=store.prefix)
    try:
        got = await follower.wait_revocations(0, now=lambda: NOW, timeout=5.0)
        assert [(e.kind, e.value) for e in got] == [(RevocationKind.SID, "s1")]
    finally:
        await follower.close()


# -- migrating data of the former layout ---------------------------------------------------
async def _write_former_layout(s: RedisStore, sid: str, token: bytes, *, ttl: int) -> None:
    """What versions before the sharded layout wrote for a new family."""
    from tokenward.store.redis.store import _family_fields

    p, fam = s.prefix, family(sid)
    old_fam = f"{{{p}:fam:{sid}}}"
    flat = _family_fields(fam, current_hash=token)
    await s._r.hset(old_fam, mapping=dict(zip(flat[::2], flat[1::2], strict=True)))
    await s._r.hset(old_fam + ":tok", f"{token.hex()}:c", repr(NOW))
    await s._r.expire(old_fam, ttl)
    await s._r.expire(old_fam + ":tok", ttl)
    await s._r.set(f"{p}:rt:{token.hex()}", sid, ex=ttl)
    await s._r.zadd(f"{{{p}}}:sub:alice", {sid: NOW})
    await s._r.zadd(f"{{{p}}}:deadline", {sid: NOW + 100})


async def test_migrate_redis_moves_former_data_and_old_tokens_still_rotate(
    store: RedisStore,
) -> None:
    from typer.testing import CliRunner

    from tokenward.cli import app

    token = h("legacy:0")
    await _write_former_layout(store, "legacy", token, ttl=1000)
    await store._r.zadd(f"{{{store.prefix}}}:deadline", {"gone": NOW - 5})  # family expired
    url = f"{URL}?prefix={store.prefix}"
    args = ["db", "migrate-redis", "--store", url]
    first = await asyncio.to_thread(CliRunner().invoke, app, args)  # the CLI runs its own loop
    assert first.exit_code == 0, first.output
    assert "moved 1 families and 2 purge-index entries" in first.output
    again = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert again.exit_code == 0 and "moved 0 families and 0" in again.output
    keys = await _keys(store)
    former = {f"{{{store.prefix}:fam:legacy}}", f"{{{store.prefix}}}:deadline"}
    assert not former & set(keys) and f"{{{store.prefix}:fam:legacy}}:tok" not in keys
    assert 990 <= await store._r.ttl(store.family_key("legacy")) <= 1000
    assert 990 <= await store._r.ttl(store.tokens_key("legacy")) <= 1000
    # an untagged token (no sid) is still found through the former index, and rotates
    found = await store.get_refresh_token(token)
    assert found is not None and found[1].sid == "legacy" and found[0].created_at == NOW
    result = await store.rotate(
        token,
        RefreshTokenRecord(h("legacy:1"), "", NOW + 1, token),
        now=NOW + 1,
        grace=10.0,
        idle_expires_at=NOW + 100,
        revocation_until=NOW + 900,
    )
    assert result.outcome is RotationOutcome.ROTATED
    assert await store.get_refresh_token(h("legacy:1"), sid="legacy") is not None
    assert (await store.purge(now=NOW, margin=0)).families == 0  # "gone": nothing left to delete
    assert await store._r.zscore(store.deadline_key(shard_of("gone")), "gone") is None


def test_migrate_redis_refuses_another_store() -> None:
    from typer.testing import CliRunner

    from tokenward.cli import app

    r = CliRunner().invoke(app, ["db", "migrate-redis", "--store", "memory://"])
    assert r.exit_code != 0 and "not a Redis store" in r.output


async def test_an_untagged_refresh_token_is_accepted_and_succeeded_by_a_tagged_one(
    store: RedisStore,
) -> None:
    from tokenward.sessions import new_refresh_token, refresh_token_sid
    from tokenward.testing import make_session_manager

    sessions = await make_session_manager(store=store, grace_period=10.0)
    old = new_refresh_token()  # the form issued before tokens named their family
    sid = "AAAAAAAAAAAAAAAAAAAAAA"
    await _write_former_layout(store, sid, hashlib.sha256(old.encode()).digest(), ttl=1000)
    await store.migrate_layout()
    sessions.clock.set(NOW + 1)  # type: ignore[attr-defined]
    pair = await sessions.refresh(old, client_id="web")
    assert pair.session_id == sid and refresh_token_sid(pair.refresh_token) == sid
    assert (await sessions.refresh(old, client_id="web")).refresh_token == pair.refresh_token
    nxt = await sessions.refresh(pair.refresh_token, client_id="web")
    assert refresh_token_sid(nxt.refresh_token) == sid


# -- redis+cluster:// ----------------------------------------------------------------------
def test_a_cluster_url_lists_its_startup_nodes_and_keeps_the_prefix() -> None:
    from tokenward.store.redis import RedisClusterStore

    s = store_from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001?prefix=nu:")
    assert isinstance(s, RedisClusterStore)
    assert s.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)] and s.prefix == "nu"


@pytest.mark.parametrize("netloc", ["", "host", "host:", "a:1,b", "h:99999", "h:port"])
def test_a_cluster_url_without_host_port_is_refused(netloc: str) -> None:
    with pytest.raises(ConfigurationError, match="host:port"):
        store_from_url(f"redis+cluster://{netloc}")

"""The token lifecycle with a frozen clock, on every store backend."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from support.stores import StoreFactory
from tokenward import FrozenClock, SessionManager, TokenPair
from tokenward.errors import (
    ConfigurationError,
    InvalidGrant,
    InvalidScope,
    RefreshTokenReused,
    RevokedToken,
    StoreUnavailable,
    UnauthorizedClient,
)
from tokenward.events import add_listener
from tokenward.issuer import Issuer
from tokenward.revocation import Denylist
from tokenward.sessions import (
    hash_refresh_token,
    new_refresh_token,
    new_sid,
    parse_refresh_token,
    refresh_token_sid,
)
from tokenward.store import Store, store_from_url
from tokenward.store.memory import MemoryStore
from tokenward.testing import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    capture_logs,
    make_session_manager,
    throwaway_keyring,
)
from tokenward.verifier import Verifier

GRACE = 10.0
IDLE = 14 * 86400.0
ABSOLUTE = 30 * 86400.0


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """The first instance of the shared backend list (memory, sqlite, postgres, redis)."""
    return await store_factory(poll_interval=0.01)


@dataclass
class Env:
    clock: FrozenClock
    issuer: Issuer
    sessions: SessionManager
    verifier: Verifier


@pytest.fixture
def env(store: Store, clock: FrozenClock) -> Env:
    issuer = Issuer(
        throwaway_keyring(clock=clock), issuer=TEST_ISSUER, audience=TEST_AUDIENCE, clock=clock
    )
    sessions = SessionManager(issuer, store, grace_period=GRACE)
    return Env(clock, issuer, sessions, sessions.verifier())


async def live_tokens(store: Store, hashes: list[bytes], sid: str) -> int:
    """How many of ``hashes`` are unconsumed refresh tokens of live family ``sid``."""
    n = 0
    for h in hashes:
        found = await store.get_refresh_token(h, sid=sid)
        if found is not None and found[0].consumed_at is None and not found[1].revoked:
            n += 1
    return n


# -- format -------------------------------------------------------------------------------


def test_refresh_token_format() -> None:
    token = new_refresh_token()
    assert token.startswith("twr_") and len(token) == 47
    raw = parse_refresh_token(token)
    assert raw is not None and len(raw) == 32
    assert len(hash_refresh_token(token)) == 32
    assert new_refresh_token() != token
    assert refresh_token_sid(token) is None  # the untagged form, issued before tagging


def test_a_tagged_refresh_token_carries_its_familys_sid() -> None:
    sid = new_sid()
    token = new_refresh_token(sid)
    assert token.startswith(f"twr_{sid}.") and len(token) == 4 + 22 + 1 + 43 == 70
    raw = parse_refresh_token(token)
    assert raw is not None and len(raw) == 32
    assert refresh_token_sid(token) == sid
    assert new_refresh_token(sid) != token


@pytest.mark.parametrize(
    "bad",
    [
        "twr_" + "A" * 22 + "." + "A" * 42,  # short secret
        "twr_" + "A" * 22 + "." + "A" * 44,
        "twr_" + "A" * 22 + ":" + "A" * 43,  # wrong separator
        "twr_" + "A" * 21 + "B." + "A" * 43,  # sid with non-zero trailing bits
        "twr_" + "A" * 22 + "." + "A" * 42 + "B",  # secret with non-zero trailing bits
        "twr_" + "A" * 21 + "=." + "A" * 43,
        "twr_" + "A" * 21 + "é." + "A" * 43,
        "twr_" + "A" * 22 + "." + "A" * 42 + "=",
        "twr_" + "." + "A" * 43,
        "twr_" + "A" * 22 + "." + "A" * 21 + "." + "A" * 20,
    ],
)
def test_malformed_tagged_refresh_tokens_are_rejected_by_the_parser(bad: str) -> None:
    assert parse_refresh_token(bad) is None and refresh_token_sid(bad) is None


def test_a_refresh_token_names_only_a_canonical_sid() -> None:
    with pytest.raises(ConfigurationError):
        new_refresh_token("not a sid")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "twr_",
        "twr_" + "A" * 42,
        "twr_" + "A" * 44,
        "twx_" + "A" * 43,
        "TWR_" + "A" * 43,
        "twr_" + "A" * 42 + "=",
        "twr_" + "A" * 42 + "+",
        "twr_" + "A" * 42 + "/",
        "twr_" + "A" * 42 + "B",  # non-zero trailing bits: not canonical base64url
        "twr_" + "A" * 42 + "é",
        "eyJhbGciOiJFUzI1NiJ9.e30.sig",
        None,
        b"twr_" + b"A" * 43,
        47,
    ],
)
def test_malformed_refresh_tokens_are_rejected_by_the_parser(bad: object) -> None:
    assert parse_refresh_token(bad) is None


# -- start and rotation -------------------------------------------------------------------


async def test_start_issues_a_pair_bound_to_a_session(env: Env) -> None:
    pair = await env.sessions.start(
        sub="alice", client_id="web", scope="read  write", user_agent="UA/1", ip="10.0.0.1"
    )
    assert isinstance(pair, TokenPair)
    assert pair.scope == "read write"
    assert pair.expires_in == 900 and pair.expires_at == int(env.clock.now()) + 900
    assert pair.refresh_expires_at == env.clock.now() + IDLE
    claims = env.verifier.verify(pair.access_token)
    assert (claims.sub, claims.client_id, claims.sid, claims.scope) == (
        "alice",
        "web",
        pair.session_id,
        "read write",
    )
    body = pair.to_response()
    assert body == {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": pair.refresh_token,
        "scope": "read write",
    }
    assert pair.refresh_token not in repr(pair) and pair.access_token not in repr(pair)
    info = await env.sessions.introspect_refresh_token(pair.refresh_token)
    assert info is not None and info.session_id == pair.session_id
    assert (info.user_agent, info.ip, info.sub) == ("UA/1", "10.0.0.1", "alice")
    # only the hash reaches the store
    found = await env.sessions.store.get_refresh_token(
        hash_refresh_token(pair.refresh_token), sid=refresh_token_sid(pair.refresh_token)
    )
    assert found is not None and found[1].sid == pair.session_id


async def test_rotation_chain(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web", scope="read")
    seen = [pair.refresh_token]
    for i in range(1, 6):
        env.clock.advance(60)
        nxt = await env.sessions.refresh(pair.refresh_token, client_id="web")
        assert nxt.session_id == pair.session_id
        assert nxt.refresh_token not in seen
        assert nxt.access_token != pair.access_token
        assert env.verifier.verify(nxt.access_token).sid == pair.session_id
        # the parent is no longer active; the child is
        assert await env.sessions.introspect_refresh_token(pair.refresh_token) is None
        assert await env.sessions.introspect_refresh_token(nxt.refresh_token) is not None
        family = await env.sessions.store.get_family(pair.session_id)
        assert family is not None and family.generation == i
        assert family.last_used_at == env.clock.now()
        seen.append(nxt.refresh_token)
        pair = nxt
    hashes = [hash_refresh_token(t) for t in seen]
    assert await live_tokens(env.sessions.store, hashes, pair.session_id) == 1


async def test_successor_is_deterministic_and_shared_by_instances(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    other = SessionManager(env.issuer, env.sessions.store, grace_period=GRACE)
    expected = await other.successor_of(pair.refresh_token)
    nxt = await env.sessions.refresh(pair.refresh_token)
    assert nxt.refresh_token == expected
    # a grace replay served by the *other* instance gets the same successor
    env.clock.advance(1)
    again = await other.refresh(pair.refresh_token)
    assert again.refresh_token == expected


# -- grace window and reuse detection -----------------------------------------------------


async def test_grace_window_inside_returns_the_same_successor(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web", scope="read")
    first = await env.sessions.refresh(pair.refresh_token, client_id="web")
    env.clock.advance(GRACE)  # exactly at the edge: still inside
    replay = await env.sessions.refresh(pair.refresh_token, client_id="web")
    assert replay.refresh_token == first.refresh_token
    assert replay.access_token != first.access_token  # a fresh access token
    a, b = env.verifier.verify(first.access_token), env.verifier.verify(replay.access_token)
    assert a.jti != b.jti and a.sid == b.sid == pair.session_id
    # no second branch: the family's one live token is the successor, and it keeps working
    family = await env.sessions.store.get_family(pair.session_id)
    assert family is not None and family.generation == 1 and not family.revoked
    assert family.current_hash == hash_refresh_token(first.refresh_token)
    nxt = await env.sessions.refresh(first.refresh_token, client_id="web")
    assert nxt.session_id == pair.session_id


async def test_grace_window_one_second_after_revokes_the_family(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    first = await env.sessions.refresh(pair.refresh_token)
    env.clock.advance(GRACE + 1)
    with pytest.raises(RefreshTokenReused) as err:
        await env.sessions.refresh(pair.refresh_token)
    assert err.value.error == "invalid_grant"
    family = await env.sessions.store.get_family(pair.session_id)
    assert family is not None and family.revoked
    assert family.revoked_reason == "refresh_token_reuse"
    # every access token of the family is rejected through the sid denylist
    for at in (pair.access_token, first.access_token):
        with pytest.raises(RevokedToken, match="session revoked"):
            env.verifier.verify(at)
    # the successor is dead too
    with pytest.raises(InvalidGrant) as dead:
        await env.sessions.refresh(first.refresh_token)
    assert not isinstance(dead.value, RefreshTokenReused)
    # and the revocation is in the store's feed, so other instances learn it
    events = await env.sessions.store.revocations_after(0, now=env.clock.now())
    assert [(e.kind, e.value) for e in events] == [("sid", pair.session_id)]


async def test_grace_period_zero_disables_the_window(env: Env) -> None:
    strict = SessionManager(env.issuer, env.sessions.store, grace_period=0)
    pair = await strict.start(sub="alice", client_id="web")
    await strict.refresh(pair.refresh_token)
    with pytest.raises(RefreshTokenReused):
        await strict.refresh(pair.refresh_token)  # same instant, still reuse


async def test_reuse_of_an_older_ancestor_inside_the_window(env: Env) -> None:
    t0 = await env.sessions.start(sub="alice", client_id="web")
    t1 = await env.sessions.refresh(t0.refresh_token)
    t2 = await env.sessions.refresh(t1.refresh_token)
    # t0 was consumed 0 s ago, but it is the grandparent of the live leaf: reuse
    with pytest.raises(RefreshTokenReused):
        await env.sessions.refresh(t0.refresh_token)
    with pytest.raises(InvalidGrant):
        await env.sessions.refresh(t2.refresh_token)
    with pytest.raises(RevokedToken):
        env.verifier.verify(t2.access_token)


async def test_reuse_after_grace_replay_and_successor_use(env: Env) -> None:
    t0 = await env.sessions.start(sub="alice", client_id="web")
    t1 = await env.sessions.refresh(t0.refresh_token)
    env.clock.advance(2)
    assert (await env.sessions.refresh(t0.refresh_token)).refresh_token == t1.refresh_token
    await env.sessions.refresh(t1.refresh_token)  # t1 consumed: t0 is no longer the parent
    with pytest.raises(RefreshTokenReused):
        await env.sessions.refresh(t0.refresh_token)


async def test_unknown_and_malformed_tokens(env: Env) -> None:
    for bad in ("", "nope", "twr_" + "A" * 42 + "B", new_refresh_token()):
        with pytest.raises(InvalidGrant) as err:
            await env.sessions.refresh(bad)
        assert not isinstance(err.value, RefreshTokenReused)
        assert await env.sessions.revoke_refresh_token(bad) is False
        assert await env.sessions.introspect_refresh_token(bad) is None


# -- lifetimes ----------------------------------------------------------------------------


async def test_idle_timeout(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    env.clock.advance(IDLE - 1)
    pair = await env.sessions.refresh(pair.refresh_token)  # use resets the idle clock
    assert pair.refresh_expires_at == env.clock.now() + IDLE
    env.clock.advance(IDLE - 1)
    assert await env.sessions.introspect_refresh_token(pair.refresh_token) is not None
    env.clock.advance(1)
    assert await env.sessions.introspect_refresh_token(pair.refresh_token) is None
    with pytest.raises(InvalidGrant, match="expired"):
        await env.sessions.refresh(pair.refresh_token)
    assert await env.sessions.list_sessions("alice") == []


async def test_absolute_lifetime(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    start = env.clock.now()
    while env.clock.now() + 13 * 86400 < start + ABSOLUTE:
        env.clock.advance(13 * 86400)
        pair = await env.sessions.refresh(pair.refresh_token)
    assert pair.refresh_expires_at == start + ABSOLUTE  # capped by the family's lifetime
    env.clock.set(start + ABSOLUTE - 1)
    pair = await env.sessions.refresh(pair.refresh_token)
    env.clock.set(start + ABSOLUTE)
    with pytest.raises(InvalidGrant, match="expired"):
        await env.sessions.refresh(pair.refresh_token)


# -- scope and client binding -------------------------------------------------------------


async def test_scope_may_narrow_but_never_widen(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web", scope="read write")
    narrow = await env.sessions.refresh(pair.refresh_token, scope="write")
    assert narrow.scope == "write"
    assert env.verifier.verify(narrow.access_token).scope == "write"
    # the family keeps its scope (RFC 6749 §6): the next refresh may ask for all of it
    full = await env.sessions.refresh(narrow.refresh_token)
    assert full.scope == "read write"
    with pytest.raises(InvalidScope):
        await env.sessions.refresh(full.refresh_token, scope="read admin")
    # a refused widening does not consume the token
    ok = await env.sessions.refresh(full.refresh_token, scope="read")
    assert ok.scope == "read"
    assert ok.session_id == pair.session_id


async def test_client_binding(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    with pytest.raises(InvalidGrant, match="another client") as err:
        await env.sessions.refresh(pair.refresh_token, client_id="mobile")
    assert not isinstance(err.value, RefreshTokenReused)
    with pytest.raises(UnauthorizedClient):
        await env.sessions.revoke_refresh_token(pair.refresh_token, client_id="mobile")
    # not consumed, not revoked: the rightful client still refreshes (no reuse alarm)
    nxt = await env.sessions.refresh(pair.refresh_token, client_id="web")
    assert env.verifier.verify(nxt.access_token).client_id == "web"


# -- revocation kinds reaching the Verifier -----------------------------------------------


async def test_revoke_access_token_by_jti(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    other = await env.sessions.refresh(pair.refresh_token)
    claims = env.verifier.verify(pair.access_token)  # now cached: the cache re-checks
    await env.sessions.revoke_access_token(claims.jti, exp=claims.exp)
    with pytest.raises(RevokedToken, match="token revoked"):
        env.verifier.verify(pair.access_token)
    assert env.verifier.verify(other.access_token).sid == pair.session_id
    events = await env.sessions.store.revocations_after(0, now=env.clock.now())
    assert [(e.kind, e.value, e.until) for e in events] == [("jti", claims.jti, claims.exp + 30)]
    # a token that is already dead everywhere is not recorded
    await env.sessions.revoke_access_token("old", exp=env.clock.now() - 31)
    assert len(await env.sessions.store.revocations_after(0, now=env.clock.now())) == 1


async def test_revoke_session(env: Env) -> None:
    a = await env.sessions.start(sub="alice", client_id="web")
    b = await env.sessions.start(sub="alice", client_id="web")
    assert await env.sessions.revoke_session(a.session_id, reason="logout") is True
    assert await env.sessions.revoke_session(a.session_id) is False
    assert await env.sessions.revoke_session("no-such-session") is False
    with pytest.raises(RevokedToken, match="session revoked"):
        env.verifier.verify(a.access_token)
    with pytest.raises(InvalidGrant):
        await env.sessions.refresh(a.refresh_token)
    assert env.verifier.verify(b.access_token).sid == b.session_id
    info = await env.sessions.get_session(a.session_id)
    assert info is not None and info.revoked_reason == "logout" and not info.active
    [event] = await env.sessions.store.revocations_after(0, now=env.clock.now())
    # until: the longest access token the session could have issued, plus the leeway
    assert event.until == env.clock.now() + 900 + 30


async def test_revoke_refresh_token_revokes_its_family(env: Env) -> None:
    pair = await env.sessions.start(sub="alice", client_id="web")
    nxt = await env.sessions.refresh(pair.refresh_token)
    assert await env.sessions.revoke_refresh_token(nxt.refresh_token, client_id="web") is True
    assert await env.sessions.revoke_refresh_token(nxt.refresh_token) is False
    with pytest.raises(RevokedToken):
        env.verifier.verify(nxt.access_token)
    with pytest.raises(InvalidGrant):
        await env.sessions.refresh(nxt.refresh_token)


async def test_revoke_subject_logs_out_everywhere(env: Env) -> None:
    a = await env.sessions.start(sub="alice", client_id="web")
    b = await env.sessions.start(sub="alice", client_id="mobile")
    c = await env.sessions.start(sub="bob", client_id="web")
    sessionless = env.issuer.issue_access_token(sub="alice", client_id="svc")
    env.clock.advance(1)
    assert await env.sessions.revoke_subject("alice") == 2
    for pair in (a, b):
        with pytest.raises(RevokedToken, match="session revoked"):
            env.verifier.verify(pair.access_token)
        with pytest.raises(InvalidGrant):
            await env.sessions.refresh(pair.refresh_token)
    with pytest.raises(RevokedToken, match="subject logged out"):
        env.verifier.verify(sessionless)
    assert env.verifier.verify(c.access_token).sub == "bob"
    assert await env.sessions.list_sessions("alice") == []
    info = await env.sessions.get_session(a.session_id)
    assert info is not None and info.revoked_reason == "subject_revoked"
    # logging in again later works: new tokens have iat >= the watermark
    env.clock.advance(1)
    again = await env.sessions.start(sub="alice", client_id="web")
    assert env.verifier.verify(again.access_token).sub == "alice"
    assert env.verifier.verify(env.issuer.issue_access_token(sub="alice", client_id="svc"))


async def test_subject_watermark_has_one_second_resolution(env: Env) -> None:
    env.clock.set(1_800_000_000.5)
    same_second = env.issuer.issue_access_token(sub="alice", client_id="svc")
    env.clock.set(1_800_000_000.7)
    await env.sessions.revoke_subject("alice")
    # iat == int(at): documented as not covered by the watermark (sid events cover sessions)
    assert env.verifier.verify(same_second).sub == "alice"


# -- queries and retention ----------------------------------------------------------------


async def test_list_sessions_newest_first(env: Env) -> None:
    first = await env.sessions.start(sub="alice", client_id="web", device="laptop", ip="1.1.1.1")
    env.clock.advance(5)
    second = await env.sessions.start(sub="alice", client_id="ios", device="phone")
    env.clock.advance(5)
    third = await env.sessions.start(sub="alice", client_id="web")
    await env.sessions.revoke_session(third.session_id)
    listed = await env.sessions.list_sessions("alice")
    assert [s.session_id for s in listed] == [second.session_id, first.session_id]
    assert (listed[1].device, listed[1].ip, listed[0].device) == ("laptop", "1.1.1.1", "phone")
    assert listed[0].to_dict()["client_id"] == "ios"
    assert "current_hash" not in listed[0].to_dict()
    assert await env.sessions.get_session("nope") is None


async def test_purge_deletes_expired_families_and_events(env: Env) -> None:
    old = await env.sessions.start(sub="alice", client_id="web")
    await env.sessions.refresh(old.refresh_token)
    await env.sessions.revoke_access_token("j1")
    env.clock.advance(IDLE + 1)
    keep = await env.sessions.start(sub="alice", client_id="web")
    counts = await env.sessions.purge()  # inside the reuse-detection margin: families stay
    assert (counts.families, counts.revocations) == (0, 1)
    assert await env.sessions.get_session(old.session_id) is not None
    env.clock.advance(7 * 86400)
    counts = await env.sessions.purge()
    assert (counts.families, counts.refresh_tokens) == (1, 2)
    assert await env.sessions.get_session(old.session_id) is None
    assert await env.sessions.get_session(keep.session_id) is not None
    with pytest.raises(InvalidGrant, match="unknown"):
        await env.sessions.refresh(old.refresh_token)


async def test_store_unavailable_fails_closed() -> None:
    sessions = await make_session_manager()
    pair = await sessions.start(sub="alice", client_id="web")
    store = sessions.store
    assert isinstance(store, MemoryStore)
    store.set_available(False)
    with pytest.raises(StoreUnavailable):
        await sessions.start(sub="alice", client_id="web")
    with pytest.raises(StoreUnavailable):
        await sessions.refresh(pair.refresh_token)
    with pytest.raises(StoreUnavailable):
        await sessions.revoke_session(pair.session_id)
    store.set_available(True)
    assert (await sessions.refresh(pair.refresh_token)).session_id == pair.session_id


async def test_configuration_is_checked() -> None:
    sessions = await make_session_manager()
    for bad in ({"grace_period": -1}, {"idle_timeout": 0}, {"successor_secret": b"short"}):
        with pytest.raises(ConfigurationError):
            SessionManager(sessions.issuer, sessions.store, **bad)  # type: ignore[arg-type]


async def test_testing_helpers() -> None:
    clock = FrozenClock(1_900_000_000)
    sessions = await make_session_manager(clock=clock, grace_period=0)
    assert sessions.clock is clock and sessions.grace_period == 0
    pair = await sessions.start(sub="u", client_id="c")
    assert sessions.verifier().verify(pair.access_token).iat == 1_900_000_000
    assert isinstance(sessions.denylist, Denylist)


# -- security events ----------------------------------------------------------------------


async def test_security_events_never_contain_token_values(env: Env) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    remove = add_listener(lambda name, fields: seen.append((name, dict(fields))))
    try:
        with capture_logs() as logs:
            pair = await env.sessions.start(
                sub="alice", client_id="web", ip="10.1.1.1", user_agent="UA/1"
            )
            nxt = await env.sessions.refresh(pair.refresh_token, ip="10.1.1.2")
            await env.sessions.refresh(pair.refresh_token)  # grace replay
            env.clock.advance(GRACE + 1)
            with pytest.raises(RefreshTokenReused):
                await env.sessions.refresh(pair.refresh_token, ip="6.6.6.6", user_agent="evil")
            await env.sessions.revoke_access_token("jti-1")
            await env.sessions.revoke_subject("alice")
            await env.sessions.purge()
    finally:
        remove()
    names = [log["event"] for log in logs if log.get("security_event")]
    assert names == [
        "issued",
        "refreshed",
        "grace_replay",
        "refresh_token_reuse",
        "revoked",
        "revoked",
        "purged",
    ]
    assert [n for n, _ in seen] == names
    reuse = next(log for log in logs if log["event"] == "refresh_token_reuse")
    assert reuse["log_level"] == "warning"
    assert (reuse["sid"], reuse["sub"], reuse["client_id"], reuse["ip"], reuse["user_agent"]) == (
        pair.session_id,
        "alice",
        "web",
        "6.6.6.6",
        "evil",
    )
    dump = json.dumps(logs, default=str) + json.dumps(seen, default=str)
    for secret in (pair.refresh_token, nxt.refresh_token, pair.access_token, nxt.access_token):
        assert secret not in dump
        # a refresh token's random part (after the family id it names) never shows
        body = secret.split(".", 1)[1] if secret.startswith("twr_") else secret[4:]
        assert body[:16] not in dump


def test_emit_redacts_token_like_values() -> None:
    from tokenward.events import emit

    token = new_refresh_token()
    with capture_logs() as logs:
        emit("revoked", value=token, note=f"x {token}", kind="sid", nothing=None)
    assert logs[0]["value"] == "[redacted]" and logs[0]["note"] == "[redacted]"
    assert "nothing" not in logs[0]
    assert logs[0]["logger"] == "tokenward.events"


async def test_store_from_url_builds_a_memory_store() -> None:
    s = store_from_url("memory://")
    assert isinstance(s, MemoryStore)
    async with s:
        await s.ping()


async def test_sweeper_runs_purge_in_a_task() -> None:
    sessions = await make_session_manager()
    purged = asyncio.Event()
    remove = add_listener(lambda name, _f: purged.set() if name == "purged" else None)
    try:
        with pytest.raises(ConfigurationError):
            sessions.start_sweeper(0)
        task = sessions.start_sweeper(3600)
        async with asyncio.timeout(10):
            await purged.wait()  # the first sweep runs at once
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        remove()


def test_a_broken_log_sink_does_not_break_the_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenward.events as events

    class Broken:
        def info(self, *_a: object, **_k: object) -> None:
            raise ValueError("I/O operation on closed file.")

        warning = info

    seen: list[str] = []
    monkeypatch.setattr(events, "_logger", Broken())
    remove = add_listener(lambda name, _f: seen.append(name))
    try:
        events.emit("issued", sid="s")
        events.emit("refresh_token_reuse", sid="s")
    finally:
        remove()
    assert seen == ["issued", "refresh_token_reuse"]  # listeners still notified

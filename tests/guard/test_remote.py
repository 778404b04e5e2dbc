"""The remote guard Verifier against a local JWKS + feed stub over real sockets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from support.authstub import AUD, CLIENT, ISS, AuthStub
from support.wait import wait_until
from tokenward.claims import AccessTokenClaims
from tokenward.clock import FrozenClock
from tokenward.errors import (
    ConfigurationError,
    ExpiredToken,
    InvalidSignature,
    RevokedToken,
    StoreUnavailable,
    UnknownKey,
)
from tokenward.guard import RevocationMirror, Verifier
from tokenward.issuer import Issuer
from tokenward.keys import KeyRing
from tokenward.store.base import RevocationEvent, RevocationKind


def make(stub: AuthStub, clock: FrozenClock, **kw: Any) -> Verifier:
    opts: dict[str, Any] = dict(
        jwks_url=stub.base + "/jwks.json",
        issuer=ISS,
        audience=AUD,
        revocations_url=stub.base + "/revocations",
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        clock=clock,
        feed_wait=0.5,
        max_staleness=60.0,
    )
    opts.update(kw)
    return Verifier(**opts)


@pytest.fixture
def served(stub: AuthStub, ring: KeyRing) -> AuthStub:
    stub.jwks = ring.public_jwks()
    return stub


@pytest.fixture
def guard(served: AuthStub, fclock: FrozenClock) -> Iterator[Verifier]:
    v = make(served, fclock)
    with v:
        yield v


def test_verify_after_start_uses_fetched_keys(guard: Verifier, issuer: Issuer, stub: AuthStub):
    claims = guard.verify(issuer.issue_access_token(sub="alice", client_id="web", scope="read"))
    assert claims.sub == "alice" and claims.scopes == {"read"}
    assert stub.jwks_hits == 1
    st = guard.status()
    assert st["revocations"]["synced"] is True and st["jwks"]["kids"] == 2


def test_first_verify_starts_lazily_and_close_joins_thread(served, fclock, issuer):
    v = make(served, fclock)
    assert v.verify(issuer.issue_access_token(sub="a", client_id="c")).sub == "a"
    assert any(t.name == "tokenward-guard" for t in threading.enumerate())
    v.close()
    v.close()  # idempotent
    assert not any(t.name == "tokenward-guard" for t in threading.enumerate())
    with pytest.raises(ConfigurationError):
        v.verify("x.y.z")


def test_wrong_key_and_expiry_rejected(guard: Verifier, issuer: Issuer, fclock: FrozenClock):
    other = Issuer(KeyRing.generate("ES256", clock=fclock), issuer=ISS, audience=AUD, clock=fclock)
    forged = other.issue_access_token(sub="mallory", client_id="c")
    # same kid, other key: the signature check refuses it without any fetch
    kid = issuer.keyring.active.kid
    _h, p, s = forged.split(".")
    good_h = issuer.issue_access_token(sub="x", client_id="c").split(".")[0]
    with pytest.raises(InvalidSignature):
        guard.verify(f"{good_h}.{p}.{s}")
    assert kid in guard.core.kids
    tok = issuer.issue_access_token(sub="alice", client_id="c", ttl=60)
    guard.verify(tok)
    fclock.advance(60 + 31)
    with pytest.raises(ExpiredToken):
        guard.verify(tok)  # cache hit still re-checks exp


def test_unknown_kid_refetches_once_per_cooldown(guard, served, ring, issuer, fclock):
    hits = served.jwks_hits
    # the server introduces a key verifiers have never seen (no publish-before-sign)
    fresh = KeyRing.generate("ES256", clock=fclock, with_next=False)
    served.jwks = {"keys": ring.public_jwks()["keys"] + fresh.public_jwks()["keys"]}
    new_issuer = Issuer(fresh, issuer=ISS, audience=AUD, clock=fclock)
    fclock.advance(31)  # past the cooldown that the start-up fetch began
    assert guard.verify(new_issuer.issue_access_token(sub="bob", client_id="c")).sub == "bob"
    assert served.jwks_hits == hits + 1
    # a second unknown kid inside the cooldown: no fetch, rejected at once
    rogue = Issuer(KeyRing.generate("ES256", clock=fclock), issuer=ISS, audience=AUD, clock=fclock)
    for _ in range(20):
        with pytest.raises(UnknownKey):
            guard.verify(rogue.issue_access_token(sub="x", client_id="c"))
    assert served.jwks_hits == hits + 1
    fclock.advance(31)
    with pytest.raises(UnknownKey):
        guard.verify(rogue.issue_access_token(sub="x", client_id="c"))
    assert served.jwks_hits == hits + 2


def test_concurrent_unknown_kids_share_one_fetch(guard, served, ring, fclock):
    hits = served.jwks_hits
    fresh = KeyRing.generate("EdDSA", clock=fclock, with_next=False)
    served.jwks = {"keys": ring.public_jwks()["keys"] + fresh.public_jwks()["keys"]}
    iss2 = Issuer(fresh, issuer=ISS, audience=AUD, clock=fclock)
    tokens = [iss2.issue_access_token(sub=f"u{i}", client_id="c") for i in range(16)]
    fclock.advance(31)
    barrier = threading.Barrier(len(tokens))
    results: list[str] = []

    def worker(tok: str) -> None:
        barrier.wait()
        try:
            results.append(guard.verify(tok).sub)
        except UnknownKey:
            results.append("rejected")

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert served.jwks_hits == hits + 1
    assert "rejected" not in results and len(results) == 16


async def test_averify_awaits_the_refetch_without_blocking(guard, served, ring, fclock):
    fresh = KeyRing.generate("RS256", clock=fclock, with_next=False)
    served.jwks = {"keys": ring.public_jwks()["keys"] + fresh.public_jwks()["keys"]}
    tok = Issuer(fresh, issuer=ISS, audience=AUD, clock=fclock).issue_access_token(
        sub="carol", client_id="c"
    )
    fclock.advance(31)
    assert (await guard.averify(tok)).sub == "carol"


def test_jwks_outage_keeps_last_good_keys(guard, served, issuer, fclock):
    served.jwks_status = 500
    fclock.advance(301)  # cached set expired; the refresh fails
    assert wait_until(lambda: served.jwks_hits >= 2)  # the background refresh was tried
    assert guard.verify(issuer.issue_access_token(sub="a", client_id="c")).sub == "a"


def test_revoked_before_start_is_in_the_snapshot(served, fclock, issuer):
    at = issuer.issue(sub="alice", client_id="web", sid="s1")
    served.add_event("jti", at.jti, at=fclock.now(), until=at.exp + 60)
    with make(served, fclock) as v:
        with pytest.raises(RevokedToken):
            v.verify(at.token)
        assert v.mirror is not None and v.mirror.cursor == 1


def test_live_revocations_reach_the_verifier(guard, served, issuer, fclock):
    a1 = issuer.issue(sub="alice", client_id="web", sid="s1")
    a2 = issuer.issue(sub="alice", client_id="web", sid="s2")
    b = issuer.issue(sub="bob", client_id="web", sid="s3")
    for t in (a1, a2, b):
        guard.verify(t.token)  # now in the verified-token cache
    served.add_event("sid", "s1", at=fclock.now(), until=fclock.now() + 900)
    assert wait_until(lambda: _rejected(guard, a1.token))
    guard.verify(a2.token)
    # log out everywhere: watermark after the tokens' iat
    fclock.advance(2)
    served.add_event("sub", "alice", at=fclock.now(), until=fclock.now() + 900)
    assert wait_until(lambda: _rejected(guard, a2.token))
    assert guard.verify(b.token).sub == "bob"
    later = issuer.issue(sub="alice", client_id="web", sid="s9")
    assert guard.verify(later.token).sub == "alice"  # tokens minted after the logout pass


def _rejected(v: Verifier, token: str) -> bool:
    try:
        v.verify(token)
    except RevokedToken:
        return True
    return False


def test_stale_mirror_fails_closed_then_recovers(guard, served, issuer, fclock):
    tok = issuer.issue_access_token(sub="alice", client_id="c")
    guard.verify(tok)
    served.feed_status = 500  # the feed goes away
    fclock.advance(59)
    assert guard.verify(tok).sub == "alice"  # within the limit: cached verification goes on
    fclock.advance(2)
    with pytest.raises(StoreUnavailable) as ei:
        guard.verify(tok)
    assert ei.value.status_code == 503 and ei.value.retry_after >= 1
    served.feed_status = 200  # back: the follower resyncs and verification resumes
    assert wait_until(lambda: not guard.mirror.stale)
    assert guard.verify(tok).sub == "alice"


def test_stale_mirror_fail_open_when_configured(served, issuer, fclock):
    with make(served, fclock, fail_closed=False) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="c")
        served.feed_status = 500
        fclock.advance(120)
        assert v.verify(tok).sub == "alice"


def test_feed_down_at_start_fails_closed(served, issuer, fclock):
    served.feed_status = 503
    with make(served, fclock, http_timeout=0.5) as v:
        assert v.mirror is not None and not v.mirror.synced
        with pytest.raises(StoreUnavailable, match="not loaded"):
            v.verify(issuer.issue_access_token(sub="a", client_id="c"))


def test_wrong_client_secret_is_reported(served, issuer, fclock):
    with make(served, fclock, client_secret="nope") as v:
        assert v.mirror is not None and not v.mirror.synced
        assert "credentials" in (v.mirror.last_error or "")
        assert "nope" not in str(v.status())
        with pytest.raises(StoreUnavailable):
            v.verify(issuer.issue_access_token(sub="a", client_id="c"))


def test_follower_resumes_from_cursor(guard, served, fclock):
    for i in range(3):
        served.add_event("jti", f"j{i}", at=fclock.now(), until=fclock.now() + 60)
    assert wait_until(lambda: guard.mirror.cursor == 3)
    served.feed_status = 500
    n = len(served.feed_requests)
    assert wait_until(lambda: len(served.feed_requests) > n + 1)
    served.feed_status = 200
    served.add_event("jti", "j3", at=fclock.now(), until=fclock.now() + 60)
    assert wait_until(lambda: guard.mirror.cursor == 4)
    afters = [int(q["after"]) for q in served.feed_requests[n:]]
    assert 0 not in afters and afters[-1] in (3, 4)


async def test_cursor_going_backwards_reloads_snapshot(fclock, issuer):
    """A server with a fresh store (cursor behind ours): the mirror starts over from 0."""
    at = issuer.issue(sub="a", client_id="c")
    now = fclock.now()
    pages = {
        "0": {"events": [_ev(1, "jti", at.jti, now)], "cursor": 1},
        "1": {"events": [], "cursor": 0},
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params["after"]
        seen.append(after)
        if len(seen) == 3:  # the reload from scratch, on the new server
            return httpx.Response(200, json={"events": [_ev(1, "jti", "x", now)], "cursor": 1})
        return httpx.Response(200, json=pages[after])

    m = RevocationMirror(
        "http://auth.test/revocations",
        client_id="a",
        client_secret="b",
        clock=fclock,
        transport=httpx.MockTransport(handler),
    )
    await m.poll_once(wait=0)
    with pytest.raises(RevokedToken):
        m.check(_claims(at))
    await m.poll_once(wait=0)
    assert seen == ["0", "1", "0"]
    m.check(_claims(at))  # the old store's revocation is gone with it
    assert m.cursor == 1
    await m.aclose()


def _ev(seq: int, kind: str, value: str, now: float) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "value": value, "until": now + 60, "at": now}


def _claims(at: Any) -> AccessTokenClaims:
    c = at.claims
    return AccessTokenClaims(
        iss=c["iss"],
        sub=c["sub"],
        aud=(c["aud"],),
        exp=c["exp"],
        iat=c["iat"],
        jti=c["jti"],
        client_id=c["client_id"],
        sid=c.get("sid"),
    )


async def test_malformed_feed_answers_are_errors_not_crashes(fclock):
    bodies = [
        b"not json",
        b'{"events": 3, "cursor": 1}',
        b'{"events": [{"seq": "1"}], "cursor": 1}',
        b'{"events": [], "cursor": -1}',
    ]
    for body in bodies:
        m = RevocationMirror(
            "http://auth.test/revocations",
            client_id="a",
            client_secret="b",
            clock=fclock,
            transport=httpx.MockTransport(lambda r, b=body: httpx.Response(200, content=b)),
        )
        assert await m.sync() is False
        assert m.last_error and not m.synced
        await m.aclose()


def test_sse_mode_follows_the_stream(served, issuer, fclock):
    with make(served, fclock, feed_mode="sse") as v:
        at = issuer.issue(sub="alice", client_id="web", sid="s1")
        v.verify(at.token)
        served.add_event("sid", "s1", at=fclock.now(), until=fclock.now() + 60)
        assert wait_until(lambda: _rejected(v, at.token))


def test_configuration_errors(stub, fclock):
    with pytest.raises(ConfigurationError):
        Verifier(jwks_url="file:///etc/passwd", issuer=ISS, audience=AUD)
    with pytest.raises(ConfigurationError):
        Verifier(jwks_url=stub.base, issuer=ISS, audience=AUD, client_id="x", client_secret="y")
    with pytest.raises(ConfigurationError):
        Verifier(jwks_url=stub.base, issuer=ISS, audience=AUD, revocations_url=stub.base)


def test_snapshot_pages_are_all_loaded_before_sync(served, issuer, fclock):
    served.page_limit = 2
    issued = [issuer.issue(sub=f"u{i}", client_id="c") for i in range(5)]
    for at in issued:
        served.add_event("jti", at.jti, at=fclock.now(), until=at.exp + 60)
    with make(served, fclock) as v:
        assert v.mirror is not None and v.mirror.synced and v.mirror.cursor == 5
        for at in issued:
            with pytest.raises(RevokedToken):
                v.verify(at.token)


async def test_sse_ready_below_our_cursor_reloads_snapshot(fclock, issuer):
    """SSE: the server's ``ready`` carries its store's cursor; below ours, start over from 0."""
    at = issuer.issue(sub="a", client_id="c")
    now = fclock.now()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["after"])
        if seen[-1] != "0":
            body = "event: ready\ndata: 0\n\n"  # a fresh store behind the server now
        else:
            ev = orjson.dumps(_ev(1, "jti", at.jti, now)).decode()
            body = f"event: ready\ndata: 1\n\nid: 1\nevent: revocation\ndata: {ev}\n\n"
        sse = {"Content-Type": "text/event-stream"}
        return httpx.Response(200, content=body.encode(), headers=sse)

    m = RevocationMirror(
        "http://auth.test/revocations",
        client_id="a",
        client_secret="b",
        clock=fclock,
        mode="sse",
        transport=httpx.MockTransport(handler),
    )
    old = issuer.issue(sub="b", client_id="c")
    m.apply([RevocationEvent(7, RevocationKind.JTI, old.jti, now + 60, now)])
    m._mark_synced()  # as after a sync with the old store
    with pytest.raises(RevokedToken):
        m.check(_claims(old))
    await m._follow_sse()  # ready 0 < 7: reset
    assert m.cursor == 0
    m.check(_claims(old))  # the old store's revocation is gone with it
    await m._follow_sse()  # the snapshot of the new store
    assert seen == ["7", "0"] and m.cursor == 1
    with pytest.raises(RevokedToken):
        m.check(_claims(at))
    await m.aclose()


async def test_sse_reconnect_event_reconnects_without_failing_closed(fclock, issuer):
    """A server that shuts down sends ``event: reconnect``: the follower connects again at
    once from its cursor, counts no failure and stays fresh (never fails closed)."""
    at = issuer.issue(sub="a", client_id="c")
    now = fclock.now()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["after"])
        ev = orjson.dumps(_ev(1, "jti", at.jti, now)).decode()
        body = f"event: ready\ndata: 1\n\nid: 1\nevent: revocation\ndata: {ev}\n\n"
        body += "event: reconnect\ndata: shutting down\n\n"
        sse = {"Content-Type": "text/event-stream"}
        return httpx.Response(200, content=body.encode(), headers=sse)

    m = RevocationMirror(
        "http://auth.test/revocations",
        client_id="a",
        client_secret="b",
        clock=fclock,
        mode="sse",
        max_staleness=30,
        transport=httpx.MockTransport(handler),
    )
    m._synced_once = True
    assert await m.sync() is True
    assert await m.sync() is True
    assert seen == ["0", "1"] and m.cursor == 1
    assert m.failures == 0 and m.last_error is None and not m.stale
    with pytest.raises(RevokedToken):
        m.check(_claims(at))
    await m.aclose()

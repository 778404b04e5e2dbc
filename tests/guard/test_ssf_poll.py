"""The guard consuming Shared Signals by poll (RFC 8936) from a tiny transmitter written here: an
HTTP server on loopback that signs SETs with its own key, serves its JWKS and SSF configuration,
hands out client_credentials tokens and queues SETs until they are acknowledged."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from support.authstub import AUD, ISS, AuthStub
from support.wait import wait_until
from tokenward.claims import AccessTokenClaims, validate_claims
from tokenward.clock import FrozenClock
from tokenward.errors import ConfigurationError, RevokedToken, StoreUnavailable
from tokenward.guard import SSFPoll, Verifier
from tokenward.guard.ssf import SSFPollSource
from tokenward.issuer import Issuer
from tokenward.jws import JWSSigner
from tokenward.keys import KeyRing
from tokenward.mirror import RevocationMirror
from tokenward.secevent import (
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    TOKEN_CLAIMS_CHANGE,
)

RECEIVER = "https://orders.example/ssf-receiver"
CC = ("ssf-receiver", "s3cret:/+")  # a secret that needs form-urlencoding (RFC 6749 §2.3.1)


class Transmitter:
    """RFC 8936 poll at ``/poll`` (one stream made beforehand) and ``/poll/<stream_id>`` (the
    streams created at ``/ssf/stream``), with bearer ``static`` or one from ``/token``; JWKS at
    ``/jwks.json``; SSF configuration at ``/.well-known/ssf-configuration``. Every SET sent goes
    to every stream."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.ring = KeyRing.generate("ES256", clock=clock, with_next=False)  # rotations unannounced
        # stream id ("" for /poll) -> jti -> SET, until acknowledged or refused
        self.streams: dict[str, dict[str, str]] = {"": {}}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.acked: list[str] = []
        self.errors: dict[str, dict[str, str]] = {}
        self.poll_status = 200
        self.hold = 0.0  # how long a returnImmediately=false poll is held when nothing is queued
        self.tokens: set[str] = {"static"}
        self.token_requests: list[dict[str, str]] = []
        self.jwks_hits = 0
        self.woken = 0
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def queue(self) -> dict[str, str]:
        return self.streams[""]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def claims(
        self, event_type: str, sub_id: dict[str, Any], *, aud: str = RECEIVER, **event: Any
    ) -> dict[str, Any]:
        now = int(self.clock.now())
        return {
            "iss": self.base,
            "jti": secrets.token_urlsafe(12),
            "iat": now,
            "aud": aud,
            "sub_id": sub_id,
            "events": {event_type: {"event_timestamp": now, **event}},
        }

    def sign(
        self, claims: dict[str, Any], *, ring: KeyRing | None = None, typ: str = "secevent+jwt"
    ) -> str:
        return JWSSigner((ring or self.ring).active, typ=typ).sign(claims)

    def send(self, claims: dict[str, Any], token: str | None = None) -> str:
        with self.cond:
            for queue in self.streams.values():
                queue[claims["jti"]] = token or self.sign(claims)
            self.cond.notify_all()
        return str(claims["jti"])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tx = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # a poll the guard gave up
                    self.close_connection = True

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if self.path == "/jwks.json":
                    tx.jwks_hits += 1
                    self._send(200, tx.ring.public_jwks())
                elif self.path == "/.well-known/ssf-configuration":
                    self._send(
                        200,
                        {
                            "issuer": tx.base,
                            "jwks_uri": tx.base + "/jwks.json",
                            "delivery_methods_supported": ["urn:ietf:rfc:8936"],
                            "configuration_endpoint": tx.base + "/ssf/stream",
                        },
                    )
                else:
                    self._send(404, {})

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/token":
                    self._token(body)
                elif self.path == "/poll" or self.path.startswith("/poll/"):
                    self._poll(body, self.path[6:])
                elif self.path == "/ssf/stream" and self._authorized():
                    stream_id = secrets.token_urlsafe(6)
                    with tx.cond:
                        tx.streams[stream_id] = {}
                        tx.created.append(orjson.loads(body))
                    self._send(
                        201,
                        {
                            "stream_id": stream_id,
                            "iss": tx.base,
                            "aud": RECEIVER,
                            "delivery": {
                                "method": "urn:ietf:rfc:8936",
                                "endpoint_url": f"{tx.base}/poll/{stream_id}",
                            },
                            "events_delivered": tx.created[-1]["events_requested"],
                        },
                    )
                elif self.path.startswith("/ssf/stream"):
                    pass
                else:
                    self._send(404, {})

            def do_DELETE(self) -> None:
                stream_id = parse_qs(self.path.partition("?")[2]).get("stream_id", [""])[0]
                if not self._authorized():
                    return
                with tx.cond:
                    gone = tx.streams.pop(stream_id, None) if stream_id else None
                    tx.deleted.append(stream_id)
                self._send(204 if gone is not None else 404, {})

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Bearer ") and auth[7:] in tx.tokens:
                    return True
                self._send(401, {"err": "authentication_failed"})
                return False

            def _token(self, body: bytes) -> None:
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                tx.token_requests.append(form)
                pair = "ssf-receiver:s3cret%3A%2F%2B"
                want = "Basic " + base64.b64encode(pair.encode()).decode()
                if self.headers.get("Authorization") != want:
                    self._send(401, {"error": "invalid_client"})
                    return
                if form != {"grant_type": "client_credentials", "scope": "ssf"}:
                    self._send(400, {"error": "invalid_request"})
                    return
                token = secrets.token_urlsafe(8)
                tx.tokens.add(token)
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

            def _poll(self, raw: bytes, stream_id: str) -> None:
                if not self._authorized():
                    return
                if tx.poll_status != 200:
                    self._send(tx.poll_status, {})
                    return
                queue = tx.streams.get(stream_id)
                if queue is None:
                    self._send(404, {"err": "not_found"})
                    return
                req = orjson.loads(raw)
                with tx.cond:
                    tx.requests.append({**req, "_stream": stream_id})
                    for jti in req.get("ack", []):
                        tx.acked.append(jti)
                        queue.pop(jti, None)
                    for jti, err in req.get("setErrs", {}).items():
                        tx.errors[jti] = err
                        queue.pop(jti, None)
                    if not req["returnImmediately"] and not queue:
                        tx.cond.wait(tx.hold)
                        tx.woken += bool(queue)
                    pending = list(queue.items())
                n = req["maxEvents"]
                self._send(200, {"sets": dict(pending[:n]), "moreAvailable": len(pending) > n})

        return H


@pytest.fixture
def tx(fclock: FrozenClock) -> Iterator[Transmitter]:
    t = Transmitter(fclock)
    yield t
    t.close()


@pytest.fixture
def served(stub: AuthStub, ring: KeyRing) -> AuthStub:
    stub.jwks = ring.public_jwks()
    return stub


def session(sid: str, sub: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"format": "complex", "session": {"format": "opaque", "id": sid}}
    if sub is not None:
        out["user"] = {"format": "iss_sub", "iss": ISS, "sub": sub}
    return out


def user(sub: str, iss: str = ISS) -> dict[str, Any]:
    return {"format": "iss_sub", "iss": iss, "sub": sub}


def config(tx: Transmitter, **kw: Any) -> SSFPoll:
    opts: dict[str, Any] = dict(
        poll_url=tx.base + "/poll",
        issuer=tx.base,
        audience=RECEIVER,
        jwks_url=tx.base + "/jwks.json",
        token="static",
        interval=0.05,
    )
    opts.update(kw)
    return SSFPoll(**opts)


def mirror_of(tx: Transmitter, clock: FrozenClock, **kw: Any) -> RevocationMirror:
    source = SSFPollSource(
        config(tx, **kw), token_issuer=ISS, leeway=30.0, wait=0.5, clock=clock, jwks_cooldown=30.0
    )
    return RevocationMirror(source, clock=clock, max_staleness=60.0)


def guard_of(served: AuthStub, tx: Transmitter, clock: FrozenClock, **kw: Any) -> Verifier:
    ssf = kw.pop("ssf", {})
    return Verifier(
        jwks_url=served.base + "/jwks.json",
        issuer=ISS,
        audience=AUD,
        clock=clock,
        revocation=config(tx, **ssf),
        **kw,
    )


def claims_of(issuer: Issuer, **kw: Any) -> AccessTokenClaims:
    claims = issuer.issue(**kw).claims
    return validate_claims(claims, issuer=ISS, audience=AUD, now=float(claims["iat"]))


def revoked(check: Any, token: str) -> bool:
    try:
        check(token)
    except RevokedToken:
        return True
    return False


# -- through the guard -----------------------------------------------------------------------


def test_rfc8936_guard_denies_a_revoked_sid_after_the_next_poll(served, tx, issuer, fclock):
    with guard_of(served, tx, fclock) as v:
        mine = issuer.issue_access_token(sub="alice", client_id="web", sid="s1")
        other = issuer.issue_access_token(sub="alice", client_id="web", sid="s2")
        assert v.verify(mine).sid == "s1"
        tx.send(tx.claims(SESSION_REVOKED, session("s1", "alice")))
        assert wait_until(lambda: revoked(v.verify, mine))
        assert v.verify(other).sid == "s2"  # only that session
        status = v.status()["revocations"]
        assert status["ssf"]["sets_applied"] == 1 and not status["stale"]


def test_the_guard_starts_failing_closed_until_its_first_poll_answers(served, tx, issuer, fclock):
    tx.poll_status = 503
    with guard_of(served, tx, fclock, http_timeout=0.5) as v:
        with pytest.raises(StoreUnavailable, match="not loaded"):
            v.verify(issuer.issue_access_token(sub="a", client_id="c"))
        tx.poll_status = 200
        assert wait_until(lambda: v.mirror is not None and v.mirror.synced)
        assert v.verify(issuer.issue_access_token(sub="a", client_id="c")).sub == "a"


def test_transmitter_down_beyond_max_staleness_fails_closed_then_recovers(
    served, tx, issuer, fclock
):
    with guard_of(served, tx, fclock) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="c")
        v.verify(tok)
        tx.poll_status = 500  # no heartbeat any more
        assert wait_until(lambda: v.mirror is not None and v.mirror.failures > 0)
        fclock.advance(59)
        assert v.verify(tok).sub == "alice"  # within the limit: verification goes on
        fclock.advance(2)
        with pytest.raises(StoreUnavailable) as ei:
            v.verify(tok)
        assert ei.value.status_code == 503 and ei.value.retry_after >= 1
        tx.poll_status = 200  # back: the next empty poll is a heartbeat
        assert wait_until(lambda: not v.mirror.stale)
        assert v.verify(tok).sub == "alice"


def test_every_empty_poll_is_a_heartbeat(served, tx, issuer, fclock):
    with guard_of(served, tx, fclock) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="c")
        for _ in range(3):  # three staleness periods, each with at least one empty poll
            fclock.advance(50)
            seen = len(tx.requests)
            assert wait_until(lambda n=seen: len(tx.requests) > n + 1)
            assert v.verify(tok).sub == "alice"


def test_fail_open_guard_keeps_verifying_when_stale(served, tx, issuer, fclock):
    with guard_of(served, tx, fclock, fail_closed=False) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="c")
        tx.poll_status = 500
        fclock.advance(120)
        assert v.verify(tok).sub == "alice"


def test_client_credentials_token_with_scope_ssf_and_jwks_from_the_ssf_configuration(
    served, tx, issuer, fclock
):
    ssf = dict(
        token=None,
        token_url=tx.base + "/token",
        client_id=CC[0],
        client_secret=CC[1],
        jwks_url=None,  # discovered: /.well-known/ssf-configuration -> jwks_uri
    )
    with guard_of(served, tx, fclock, ssf=ssf) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="web", sid="s1")
        tx.send(tx.claims(SESSION_REVOKED, session("s1")))
        assert wait_until(lambda: revoked(v.verify, tok))
        assert tx.token_requests == [{"grant_type": "client_credentials", "scope": "ssf"}]
        tx.tokens = {"static"}  # the transmitter forgets the token: one new grant, then on
        n = len(tx.requests)
        assert wait_until(lambda: len(tx.requests) > n + 1)
        assert len(tx.token_requests) == 2
        assert CC[1] not in repr(v.mirror.source.config)  # type: ignore[union-attr]


def test_a_refused_bearer_token_is_reported_without_the_token(served, tx, issuer, fclock):
    with guard_of(served, tx, fclock, ssf={"token": "wrong-token"}) as v:
        assert v.mirror is not None and not v.mirror.synced
        assert "refused the bearer token" in (v.mirror.last_error or "")
        assert "wrong-token" not in str(v.status())


def test_flask_settings_dict_selects_ssf_poll(served, tx, issuer, fclock):
    flask = pytest.importorskip("flask")
    from tokenward.guard.flask import Guard, current_claims

    app = flask.Flask("t")
    app.config["TOKENWARD_GUARD"] = {
        "jwks_url": served.base + "/jwks.json",
        "issuer": ISS,
        "audience": AUD,
        "clock": fclock,
        "revocation": {  # plain data, as a settings file holds it
            "poll_url": tx.base + "/poll",
            "issuer": tx.base,
            "audience": RECEIVER,
            "jwks_url": tx.base + "/jwks.json",
            "token": "static",
            "interval": 0.05,
        },
    }
    guard = Guard(app)

    @app.get("/orders")
    @guard.require()
    def orders() -> Any:
        return {"sid": current_claims().sid}

    tok = issuer.issue_access_token(sub="alice", client_id="web", sid="s1")
    client = app.test_client()
    try:
        auth = {"Authorization": f"Bearer {tok}"}
        assert wait_until(lambda: client.get("/orders", headers=auth).status_code == 200)
        tx.send(tx.claims(SESSION_REVOKED, session("s1")))
        assert wait_until(lambda: client.get("/orders", headers=auth).status_code == 401)
    finally:
        guard.close()


def test_configuration_errors(served, tx, fclock):
    base = dict(poll_url=tx.base + "/poll", issuer=tx.base, audience=RECEIVER)
    with pytest.raises(ConfigurationError, match="token"):
        SSFPoll(**base)  # no credentials at all
    with pytest.raises(ConfigurationError, match="audience"):
        SSFPoll(**{**base, "audience": None}, token="t")  # a given stream: say whose it is
    with pytest.raises(ConfigurationError, match="either"):
        SSFPoll(**base, token="t", client_id="c")
    with pytest.raises(ConfigurationError, match="http"):
        SSFPoll(**{**base, "poll_url": "ftp://x/poll"}, token="t")
    with pytest.raises(ConfigurationError, match="max_events"):
        SSFPoll(**base, token="t", max_events=0)
    with pytest.raises(ConfigurationError, match="revocation settings"):
        SSFPoll.of({**base, "token": "t", "colour": "blue"})
    with pytest.raises(ConfigurationError, match="replaces revocations_url"):
        guard_of(served, tx, fclock, revocations_url=served.base + "/revocations")
    with pytest.raises(ConfigurationError, match="interval"):
        guard_of(served, tx, fclock, max_staleness=3.0, ssf={"interval": 2.0})


# -- one poll at a time, on the mirror directly ----------------------------------------------


async def test_rfc8936_one_poll_applies_the_sets_then_the_next_poll_acknowledges_them(
    tx, issuer, fclock
):
    mirror = mirror_of(tx, fclock)
    tok = claims_of(issuer, sub="alice", client_id="web", sid="s1")
    a = tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    b = tx.send(tx.claims(SESSION_REVOKED, session("s7")))
    assert await mirror.sync()  # one poll
    with pytest.raises(RevokedToken, match="session revoked"):
        mirror.check(tok)
    assert tx.requests[0]["returnImmediately"] is True and "ack" not in tx.requests[0]
    source = mirror.source
    assert isinstance(source, SSFPollSource) and source.pending_acks == [a, b]
    assert await mirror.sync()
    assert tx.requests[1]["ack"] == [a, b] and tx.acked == [a, b] and not tx.queue
    assert tx.requests[1]["returnImmediately"] is False  # synced: the transmitter may hold it
    assert source.pending_acks == [] and source.acks_sent == 2
    await mirror.aclose()


async def test_acks_survive_a_failed_poll_and_are_sent_with_the_next_one(tx, fclock):
    mirror = mirror_of(tx, fclock)
    a = tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert await mirror.sync()
    tx.poll_status = 502
    assert not await mirror.sync()
    assert "502" in (mirror.last_error or "")
    tx.poll_status = 200
    assert await mirror.sync()
    assert tx.requests[-1]["ack"] == [a] and tx.acked == [a]
    await mirror.aclose()


async def test_a_redelivered_set_is_acknowledged_again_but_applied_once(tx, fclock):
    mirror = mirror_of(tx, fclock)
    claims = tx.claims(SESSION_REVOKED, session("s1"))
    jti = tx.send(claims)
    assert await mirror.sync()
    token = tx.queue[jti]
    # the ack is lost on the way: the transmitter delivers the SET again
    source = mirror.source
    assert isinstance(source, SSFPollSource)
    source._acks.clear()
    assert await mirror.sync()
    assert source.duplicates == 1 and source.sets_applied == 1
    assert mirror.events_applied == 1
    assert source.pending_acks == [jti] and tx.queue == {jti: token}
    assert await mirror.sync()
    assert tx.acked == [jti] and not tx.queue
    await mirror.aclose()


async def test_more_available_pages_are_fetched_at_once(tx, fclock):
    mirror = mirror_of(tx, fclock, max_events=2)
    sids = [f"s{i}" for i in range(5)]
    for sid in sids:
        tx.send(tx.claims(SESSION_REVOKED, session(sid)))
    for _ in range(3):
        assert await mirror.sync()
    assert [r["maxEvents"] for r in tx.requests] == [2, 2, 2]
    assert all(mirror.denylist.is_revoked(jti=None, sid=s, sub=None, iat=0) for s in sids)
    await mirror.aclose()


@pytest.mark.parametrize(
    ("make", "err"),
    [
        (lambda tx, c: tx.sign(c, ring=KeyRing.generate("ES256")), "invalid_key"),  # unknown key
        (lambda tx, c: _forged(tx, c), "invalid_key"),  # known kid, wrong signature
        (lambda tx, c: tx.sign(c, typ="at+jwt"), "invalid_request"),
        (lambda tx, c: tx.sign({**c, "aud": "https://someone.else"}), "invalid_audience"),
        (lambda tx, c: tx.sign({**c, "iss": "https://evil.example"}), "invalid_issuer"),
        (lambda tx, c: tx.sign({**c, "events": {}}), "invalid_request"),
        (lambda tx, c: tx.sign({**c, "jti": "another-jti"}), "invalid_request"),
        (lambda tx, c: "not.a.set", "invalid_request"),
    ],
)
async def test_rfc8935_2_3_an_invalid_set_is_reported_in_set_errs_and_not_applied(
    tx, fclock, make, err
):
    mirror = mirror_of(tx, fclock)
    good = tx.send(tx.claims(SESSION_REVOKED, session("good")))
    claims = tx.claims(SESSION_REVOKED, session("bad"))
    bad = tx.send(claims, make(tx, claims))
    assert await mirror.sync()  # a refused SET does not stop the heartbeat
    assert mirror.denylist.is_revoked(jti=None, sid="bad", sub=None, iat=0) is None
    assert mirror.denylist.is_revoked(jti=None, sid="good", sub=None, iat=0)
    assert await mirror.sync()
    assert tx.requests[-1]["ack"] == [good]
    assert tx.errors[bad]["err"] == err and tx.errors[bad]["description"]
    await mirror.aclose()


def _forged(tx: Transmitter, claims: dict[str, Any]) -> str:
    other = KeyRing.generate("ES256")
    h, p, _ = tx.sign(claims).split(".")
    forged_sig = tx.sign(claims, ring=other).split(".")[2]
    return f"{h}.{p}.{forged_sig}"


async def test_a_set_signed_with_a_new_transmitter_key_is_applied_after_one_jwks_fetch(tx, fclock):
    mirror = mirror_of(tx, fclock)
    assert await mirror.sync()
    tx.send(tx.claims(SESSION_REVOKED, session("s0")))
    assert await mirror.sync()  # keys fetched once for the first SET
    hits = tx.jwks_hits
    fclock.advance(31)  # past the JWKS cooldown
    tx.ring.rotate()
    tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert await mirror.sync()
    assert tx.jwks_hits == hits + 1
    assert mirror.denylist.is_revoked(jti=None, sid="s1", sub=None, iat=0)
    await mirror.aclose()


async def test_a_set_with_an_unknown_key_inside_the_cooldown_waits_unacknowledged(tx, fclock):
    mirror = mirror_of(tx, fclock)
    tx.send(tx.claims(SESSION_REVOKED, session("s0")))
    assert await mirror.sync()
    tx.ring.rotate()  # within the cooldown: no fetch yet, the SET is neither acked nor refused
    jti = tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert not await mirror.sync()  # and that poll is no heartbeat
    assert "not list yet" in (mirror.last_error or "")
    source = mirror.source
    assert isinstance(source, SSFPollSource)
    assert jti not in source.pending_acks and jti not in source.pending_errors
    fclock.advance(31)
    assert await mirror.sync()
    assert mirror.denylist.is_revoked(jti=None, sid="s1", sub=None, iat=0)
    assert jti in source.pending_acks
    await mirror.aclose()


# -- what each event does ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type", [SESSIONS_REVOKED, ACCOUNT_DISABLED, CREDENTIAL_CHANGE, TOKEN_CLAIMS_CHANGE]
)
async def test_a_subject_event_denies_the_users_tokens_issued_before_it(
    tx, issuer, fclock, event_type
):
    mirror = mirror_of(tx, fclock)
    before = claims_of(issuer, sub="alice", client_id="web", sid="a1")
    bob = claims_of(issuer, sub="bob", client_id="web", sid="b1")
    fclock.advance(2)
    tx.send(tx.claims(event_type, user("alice")))
    assert await mirror.sync()
    with pytest.raises(RevokedToken, match="subject"):
        mirror.check(before)
    mirror.check(bob)
    fclock.advance(1)
    mirror.check(claims_of(issuer, sub="alice", client_id="web", sid="a2"))  # signed in again
    await mirror.aclose()


async def test_session_revoked_without_a_session_ends_every_session_of_the_user(tx, issuer, fclock):
    mirror = mirror_of(tx, fclock)
    a1 = claims_of(issuer, sub="alice", client_id="web", sid="a1")
    fclock.advance(2)
    tx.send(tx.claims(SESSION_REVOKED, user("alice")))
    assert await mirror.sync()
    with pytest.raises(RevokedToken):
        mirror.check(a1)
    await mirror.aclose()


async def test_account_enabled_lifts_nothing_and_foreign_subjects_are_ignored(tx, issuer, fclock):
    mirror = mirror_of(tx, fclock)
    old = claims_of(issuer, sub="alice", client_id="web", sid="a1")
    fclock.advance(2)
    tx.send(tx.claims(ACCOUNT_DISABLED, user("alice")))
    tx.send(tx.claims(ACCOUNT_DISABLED, user("bob", iss="https://another-idp.example")))
    tx.send(tx.claims(SESSIONS_REVOKED, {"format": "email", "email": "carol@example.com"}))
    assert await mirror.sync()
    fclock.advance(2)
    tx.send(tx.claims(ACCOUNT_ENABLED, user("alice")))
    assert await mirror.sync()
    with pytest.raises(RevokedToken):
        mirror.check(old)  # tokens from before the disabling stay denied
    mirror.check(claims_of(issuer, sub="alice", client_id="web", sid="a2"))
    mirror.check(claims_of(issuer, sub="bob", client_id="web", sid="b1"))
    source = mirror.source
    assert isinstance(source, SSFPollSource)
    assert source.sets_applied == 1 and source.sets_ignored == 3
    assert await mirror.sync()
    assert len(tx.acked) == 4 and not tx.errors  # every SET is acknowledged, applied or not
    await mirror.aclose()


async def test_a_transmitter_clock_ahead_cannot_refuse_tokens_issued_after_the_event(
    tx, issuer, fclock
):
    mirror = mirror_of(tx, fclock)
    claims = tx.claims(SESSIONS_REVOKED, user("alice"))
    claims["events"][SESSIONS_REVOKED]["event_timestamp"] = int(fclock.now()) + 3600
    tx.send(claims)
    assert await mirror.sync()
    fclock.advance(1)
    mirror.check(claims_of(issuer, sub="alice", client_id="web", sid="a2"))
    await mirror.aclose()


async def test_denials_are_kept_for_the_token_lifetime_plus_leeway(tx, issuer, fclock):
    mirror = mirror_of(tx, fclock, token_lifetime=900.0)
    tok = claims_of(issuer, sub="alice", client_id="web", sid="s1")
    tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert await mirror.sync()
    fclock.advance(900 + 30 - 1)
    mirror.denylist.sweep()
    with pytest.raises(RevokedToken):
        mirror.denylist.check(tok)
    fclock.advance(2)
    mirror.denylist.sweep()
    mirror.denylist.check(tok)
    await mirror.aclose()


def test_long_polls_are_held_by_the_transmitter_and_answered_when_a_set_arrives(
    served, tx, issuer, fclock
):
    tx.hold = 5.0
    with guard_of(served, tx, fclock, feed_wait=6.0, ssf={"interval": 1.0}) as v:
        tok = issuer.issue_access_token(sub="alice", client_id="web", sid="s1")
        assert wait_until(lambda: any(not r["returnImmediately"] for r in tx.requests))
        tx.send(tx.claims(SESSION_REVOKED, session("s1")))
        assert wait_until(lambda: revoked(v.verify, tok))
        assert tx.woken == 1  # the held poll carried the SET as soon as it was queued


# -- one stream per process ------------------------------------------------------------------


def test_each_worker_creates_its_own_stream_so_every_worker_denies_the_session(
    served, tx, issuer, fclock
):
    own = {"poll_url": None, "audience": None, "jwks_url": None}  # all from the transmitter
    workers = [guard_of(served, tx, fclock, ssf=own).start() for _ in range(2)]
    try:
        tok = issuer.issue_access_token(sub="alice", client_id="web", sid="s1")
        assert all(w.verify(tok).sid == "s1" for w in workers)
        assert len(tx.created) == 2 and len(tx.streams) == 3
        assert tx.created[0]["delivery"] == {"method": "urn:ietf:rfc:8936"}
        assert SESSION_REVOKED in tx.created[0]["events_requested"]
        tx.send(tx.claims(SESSION_REVOKED, session("s1")))
        for w in workers:  # each worker's stream got the SET: none took it from the other
            assert wait_until(lambda w=w: revoked(w.verify, tok))
        ids = [w.status()["revocations"]["ssf"]["stream_id"] for w in workers]
        assert len(set(ids)) == 2 and None not in ids
    finally:
        for w in workers:
            w.close()
    assert sorted(tx.deleted) == sorted(ids) and tx.streams.keys() == {""}


async def test_a_stream_the_transmitter_dropped_is_created_again(tx, fclock):
    mirror = mirror_of(tx, fclock, poll_url=None)
    assert await mirror.sync()
    source = mirror.source
    assert isinstance(source, SSFPollSource) and source.stream_id is not None
    first = source.stream_id
    with tx.cond:
        del tx.streams[first]
    assert not await mirror.sync()
    assert "gone" in (mirror.last_error or "") and source.stream_id is None
    assert await mirror.sync()
    assert source.stream_id not in (None, first) and len(tx.created) == 2
    await mirror.aclose()


async def test_rfc8936_2_4_1_at_close_the_last_acks_go_with_max_events_0(tx, fclock):
    mirror = mirror_of(tx, fclock)
    jti = tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert await mirror.sync()
    source = mirror.source
    assert isinstance(source, SSFPollSource) and source.pending_acks == [jti]
    await source.finish()
    assert tx.acked == [jti] and not tx.queue
    assert tx.requests[-1]["maxEvents"] == 0 and tx.requests[-1]["ack"] == [jti]
    await mirror.aclose()


async def test_a_transmitter_holding_polls_longer_than_we_wait_is_then_polled_at_once(tx, fclock):
    tx.hold = 5.0
    source = SSFPollSource(
        config(tx), token_issuer=ISS, leeway=30.0, wait=0.2, http_timeout=0.3, clock=fclock
    )
    mirror = RevocationMirror(source, clock=fclock, max_staleness=60.0)
    assert await mirror.sync()  # the first poll returns at once
    assert not await mirror.sync()  # held beyond wait + http_timeout: a failure
    assert not source.holding
    tx.send(tx.claims(SESSION_REVOKED, session("s1")))
    assert await mirror.sync()
    assert tx.requests[-1]["returnImmediately"] is True
    assert mirror.denylist.is_revoked(jti=None, sid="s1", sub=None, iat=0)
    await mirror.aclose()


async def test_after_finish_no_stream_is_created_again(tx, fclock):
    mirror = mirror_of(tx, fclock, poll_url=None)
    assert await mirror.sync()
    source = mirror.source
    assert isinstance(source, SSFPollSource)
    first = source.stream_id
    await source.finish()  # the guard closes while its follower task still runs
    assert tx.deleted == [first]
    assert not await mirror.sync()  # a poll racing the close creates nothing
    assert len(tx.created) == 1 and tx.streams.keys() == {""}
    await mirror.aclose()


@pytest.mark.parametrize(
    ("event_type", "same_second_refused"),
    [
        (SESSIONS_REVOKED, True),
        (ACCOUNT_DISABLED, True),
        (SESSION_REVOKED, True),
        (CREDENTIAL_CHANGE, False),
        (TOKEN_CLAIMS_CHANGE, False),
    ],
)
async def test_iat_resolution_events_ending_sessions_cover_their_own_second(
    tx, issuer, fclock, event_type, same_second_refused
):
    mirror = mirror_of(tx, fclock)
    fclock.set(int(fclock.now()) + 0.2)
    same = claims_of(issuer, sub="alice", client_id="web", sid="a1")  # minted in that second
    fclock.advance(0.5)
    tx.send(tx.claims(event_type, user("alice")))
    assert await mirror.sync()
    assert revoked(mirror.check, same) is same_second_refused
    fclock.advance(1)
    mirror.check(claims_of(issuer, sub="alice", client_id="web", sid="a2"))  # the next second
    await mirror.aclose()

"""The Shared Signals transmitter over real sockets: ``tokenward serve`` on SQLite, a receiver
written here (an HTTP server on loopback, allowed by ``TOKENWARD_OUTBOUND_ALLOW_PRIVATE=1``),
stream management with a ``client_credentials`` token carrying the ``ssf`` scope, push
(RFC 8935) and poll (RFC 8936) delivery, and every SET event type emitted by its trigger.
SETs are verified against the server's published JWKS."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serve import BIN, Served, clean_env, free_port, launch, serve
from support.server import ADMIN_PW
from tokenward.server.ssf import (
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    TOKEN_CLAIMS_CHANGE,
    verify_set,
)

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
RISK_LEVEL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/risk-level-change"
ALL_EVENTS = [
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    CREDENTIAL_CHANGE,
    TOKEN_CLAIMS_CHANGE,
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    RISK_LEVEL_CHANGE,
]
PW = "a long user password"
SETTINGS = {
    "TOKENWARD_PASSWORD_TIME_COST": "1",
    "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
    "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
    "TOKENWARD_LOGIN_LIMIT_PER_IP": "1000/minute",
    "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "1000/minute",
    "TOKENWARD_OUTBOUND_ALLOW_PRIVATE": "1",
    # a refresh storm ends the session and tells the streams (risk-level-change)
    "TOKENWARD_RISK_REFRESH_VELOCITY": "flag,notify,revoke_session",
    "TOKENWARD_RISK_VELOCITY_MAX": "2",
    "TOKENWARD_FEED_MAX_WAIT": "5",
    # no grace window: presenting a rotated refresh token again is reuse at once
    "TOKENWARD_REFRESH_GRACE_SECONDS": "0",
}
CONSOLE = "tokenward-console"


# the receiver ---------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An RFC 8935 push receiver: records every POST; answers ``status`` (202 by default)."""

    port: int
    status: int = 202
    received: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def bodies(self) -> list[str]:
        with self.lock:
            return [b for _, b, _ in self.received]

    def wait_for(self, pred: Any, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = [b for b in self.bodies() if pred(b)]
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got nothing matching in {timeout} s")
            time.sleep(0.01)  # another thread writes


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(n).decode()
            with rec.lock:
                rec.attempts += 1
                status = rec.status
                if 200 <= status < 300:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    rec.received.append((time.monotonic(), body, headers))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", rec.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield rec
    httpd.shutdown()
    httpd.server_close()


# the server -----------------------------------------------------------------------------------


def _settings(port: int) -> dict[str, str]:
    return {**SETTINGS, "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    cwd = tmp_path_factory.mktemp("ssf")
    with serve(_settings(port), cwd=cwd, port=port) as s:
        setup(s)
        s.cwd = cwd  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The outbound rules as deployed: no ``TOKENWARD_OUTBOUND_ALLOW_PRIVATE``."""
    port = free_port()
    settings = {k: v for k, v in _settings(port).items() if "OUTBOUND" not in k}
    with serve(settings, cwd=tmp_path_factory.mktemp("ssf-guarded"), port=port) as s:
        setup(s)
        yield s


def admin_token(http: httpx.Client) -> str:
    r = http.post("/login", json={"username": "admin", "password": ADMIN_PW, "scope": "admin"})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def setup(s: Served) -> None:
    """Two receivers' clients (``ssf`` scope) and one without the scope."""
    with httpx.Client(base_url=s.base, timeout=20) as http:
        admin = admin_token(http)
        secrets = {}
        for cid, scopes in (("rcv", ["ssf"]), ("rcv2", ["ssf"]), ("plain", ["revocations"])):
            r = http.post(
                "/admin/clients",
                json={
                    "client_id": cid,
                    "grants": ["client_credentials"],
                    "scopes": scopes,
                    "resources": [s.base],
                },
                headers=bearer(admin),
            )
            assert r.status_code in (200, 201), r.text
            secrets[cid] = r.json()["client_secret"]
        s.secrets = secrets  # type: ignore[attr-defined]


def client_token(s: Served, cid: str = "rcv", scope: str = "ssf") -> str:
    r = httpx.post(
        f"{s.base}/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(cid, s.secrets[cid]),  # type: ignore[attr-defined]
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def add_user(s: Served, name: str) -> None:
    with httpx.Client(base_url=s.base, timeout=20) as http:
        r = http.post(
            "/admin/users",
            json={"username": name, "password": PW},
            headers=bearer(admin_token(http)),
        )
        assert r.status_code in (200, 201), r.text


def login(s: Served, name: str) -> dict[str, Any]:
    r = httpx.post(f"{s.base}/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def create_stream(s: Served, token: str, delivery: dict[str, Any], events: list[str]) -> str:
    r = httpx.post(
        f"{s.base}/ssf/streams",
        json={"events_requested": events, "delivery": delivery},
        headers=bearer(token),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["stream_id"])


def jwks(s: Served) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{s.base}/.well-known/jwks.json").json()
    return body


def poll_all(s: Served, token: str, stream_id: str) -> dict[str, dict[str, Any]]:
    """Every queued SET of the stream, verified, acknowledged: jti → claims."""
    keys = jwks(s)
    out: dict[str, dict[str, Any]] = {}
    ack: list[str] = []
    while True:
        r = httpx.post(
            f"{s.base}/ssf/poll/{stream_id}",
            json={"ack": ack, "returnImmediately": True, "maxEvents": 50},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        sets = r.json()["sets"]
        ack = list(sets)
        for jti, token_ in sets.items():
            out[jti] = verify_set(keys, token_)
        if not sets:
            return out


def event_of(claims: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((etype, body),) = claims["events"].items()
    return etype, body


# tests ------------------------------------------------------------------------------------------


def test_ssf_1_0_7_1_configuration_document(served: Served) -> None:
    r = httpx.get(f"{served.base}/.well-known/ssf-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == served.base
    assert doc["jwks_uri"] == f"{served.base}/.well-known/jwks.json"
    assert set(doc["delivery_methods_supported"]) == {PUSH, POLL}
    assert doc["configuration_endpoint"] == f"{served.base}/ssf/streams"
    for name in ("status_endpoint", "add_subject_endpoint", "remove_subject_endpoint"):
        assert doc[name].startswith(served.base + "/ssf/")
    assert doc["verification_endpoint"] == f"{served.base}/ssf/verify"
    assert doc["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
    assert doc["default_subjects"] == "ALL"


def test_stream_management_needs_a_client_token_with_the_ssf_scope(served: Served) -> None:
    url = f"{served.base}/ssf/streams"
    r = httpx.get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.get(url, headers=bearer("not-a-token"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = httpx.get(url, headers=bearer(client_token(served, "plain", "revocations")))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="ssf"' in r.headers["www-authenticate"]


def test_ssf_8_1_1_stream_crud_and_ownership(served: Served) -> None:
    token, other = client_token(served), client_token(served, "rcv2")
    sid = create_stream(served, token, {"method": POLL}, [SESSION_REVOKED])
    url = f"{served.base}/ssf/streams"
    got = httpx.get(url, params={"stream_id": sid}, headers=bearer(token)).json()
    assert got["aud"] == "rcv" and got["iss"] == served.base
    assert got["delivery"] == {"method": POLL, "endpoint_url": f"{served.base}/ssf/poll/{sid}"}
    assert got["events_delivered"] == [SESSION_REVOKED]
    listed = httpx.get(url, headers=bearer(token)).json()
    assert sid in [s["stream_id"] for s in listed]
    r = httpx.patch(
        url, json={"stream_id": sid, "events_requested": ALL_EVENTS}, headers=bearer(token)
    )
    assert r.status_code == 200 and set(r.json()["events_delivered"]) == set(ALL_EVENTS)
    r = httpx.put(
        url,
        json={"stream_id": sid, "delivery": {"method": POLL}, "description": "replaced"},
        headers=bearer(token),
    )
    assert r.status_code == 200
    assert r.json()["events_requested"] == [] and r.json()["description"] == "replaced"
    # another client's stream is not found, whatever it tries
    assert httpx.get(url, params={"stream_id": sid}, headers=bearer(other)).status_code == 404
    r = httpx.patch(url, json={"stream_id": sid, "description": "x"}, headers=bearer(other))
    assert r.status_code == 404
    assert httpx.delete(url, params={"stream_id": sid}, headers=bearer(other)).status_code == 404
    r = httpx.post(f"{served.base}/ssf/poll/{sid}", json={}, headers=bearer(other))
    assert r.status_code == 404
    assert httpx.delete(url, params={"stream_id": sid}, headers=bearer(token)).status_code == 204
    assert httpx.get(url, params={"stream_id": sid}, headers=bearer(token)).status_code == 404


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://10.0.0.7/events",  # private
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "https://[::1]/events",
        "https://127.0.0.1:8443/events",
        "https://localhost/events",
        "http://127.0.0.1/events",  # plain http, loopback
        "http://receiver.example/events",  # plain http
        "ftp://receiver.example/events",
        "https://user:pw@receiver.example/events",
    ],
)
def test_push_urls_follow_the_outbound_rules_no_ssrf(guarded: Served, endpoint: str) -> None:
    r = httpx.post(
        f"{guarded.base}/ssf/streams",
        json={"delivery": {"method": PUSH, "endpoint_url": endpoint}},
        headers=bearer(client_token(guarded)),
    )
    assert r.status_code == 400
    assert r.json()["error_description"].startswith("delivery.endpoint_url is refused")


def test_a_logout_reaches_the_push_receiver_signed_within_2_s(
    served: Served, receiver: Receiver
) -> None:
    token = client_token(served)
    stream = create_stream(
        served,
        token,
        {"method": PUSH, "endpoint_url": receiver.url, "authorization_header": "Bearer rcv-key"},
        [SESSION_REVOKED],
    )
    add_user(served, "pat")
    session = login(served, "pat")
    start = time.monotonic()
    r = httpx.post(f"{served.base}/logout", headers=bearer(session["access_token"]))
    assert r.status_code == 200
    sid = _sid(served, session["access_token"])
    keys = jwks(served)

    def about_pat(body: str) -> bool:
        return bool(verify_set(keys, body)["sub_id"].get("user", {}).get("sub") == "pat")

    (body,) = receiver.wait_for(about_pat, timeout=2.0)
    latency = receiver.received[-1][0] - start
    claims = verify_set(keys, body)
    assert claims["iss"] == served.base and claims["aud"] == "rcv"
    etype, event = event_of(claims)
    assert etype == SESSION_REVOKED and event["initiating_entity"] == "user"
    assert claims["sub_id"]["session"]["id"] == sid
    _, _, headers = receiver.received[-1]
    assert headers["content-type"] == "application/secevent+jwt"
    assert headers["authorization"] == "Bearer rcv-key"
    assert latency < 2.0, latency
    print(f"logout -> SET at the receiver: {latency * 1000:.0f} ms")
    httpx.delete(f"{served.base}/ssf/streams", params={"stream_id": stream}, headers=bearer(token))


def test_rfc8936_poll_with_ack_and_redelivery(served: Served) -> None:
    token = client_token(served)
    stream = create_stream(served, token, {"method": POLL}, [ACCOUNT_DISABLED, ACCOUNT_ENABLED])
    add_user(served, "quinn")
    with httpx.Client(base_url=served.base, timeout=20) as http:
        admin = bearer(admin_token(http))
        assert http.post("/admin/users/quinn/disable", headers=admin).status_code == 200
        assert http.post("/admin/users/quinn/enable", headers=admin).status_code == 200
    url = f"{served.base}/ssf/poll/{stream}"
    r = httpx.post(url, json={"maxEvents": 1, "returnImmediately": True}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["moreAvailable"] is True
    (first,) = r.json()["sets"]
    # not acknowledged: delivered again
    r = httpx.post(url, json={"maxEvents": 1, "returnImmediately": True}, headers=bearer(token))
    assert list(r.json()["sets"]) == [first]
    r = httpx.post(url, json={"ack": [first], "returnImmediately": True}, headers=bearer(token))
    ((second, token2),) = r.json()["sets"].items()
    assert second != first and r.json()["moreAvailable"] is False
    assert event_of(verify_set(jwks(served), token2))[0] == ACCOUNT_ENABLED
    r = httpx.post(url, json={"ack": [second], "returnImmediately": True}, headers=bearer(token))
    assert r.json() == {"sets": {}, "moreAvailable": False}
    # a long poll returns as soon as a SET arrives
    add_user(served, "rory")

    def later() -> None:
        time.sleep(0.3)  # lets the long poll start first
        with httpx.Client(base_url=served.base, timeout=20) as http:
            http.post("/admin/users/rory/disable", headers=bearer(admin_token(http)))

    threading.Thread(target=later).start()
    r = httpx.post(url, json={}, headers=bearer(token), timeout=20)
    assert len(r.json()["sets"]) == 1


def _refresh(s: Served, token: str) -> httpx.Response:
    return httpx.post(
        f"{s.base}/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CONSOLE},
    )


def test_every_event_type_is_emitted_by_its_trigger(served: Served) -> None:
    token = client_token(served)
    stream = create_stream(served, token, {"method": POLL}, ALL_EVENTS)
    for name in ("sam", "tess"):
        add_user(served, name)
    base = served.base
    with httpx.Client(base_url=base, timeout=20) as http:
        admin = bearer(admin_token(http))
        # logout → session-revoked (user)
        s1 = login(served, "sam")
        assert http.post("/logout", headers=bearer(s1["access_token"])).status_code == 200
        # admin revokes one session → session-revoked (admin)
        s2 = login(served, "sam")
        sid2 = _sid(served, s2["access_token"])
        assert http.delete(f"/admin/sessions/{sid2}", headers=admin).status_code == 204
        # refresh-token reuse → session-revoked (policy)
        s3 = login(served, "sam")
        assert _refresh(served, s3["refresh_token"]).status_code == 200
        r = _refresh(served, s3["refresh_token"])
        assert r.status_code == 400 and "reuse" in r.json()["error_description"]
        r = http.post(
            "/account/password",
            json={"current_password": PW, "new_password": PW + " changed"},
            headers=bearer(login(served, "tess")["access_token"]),
        )
        assert r.status_code == 200, r.text  # → credential-change (user)
        r = http.post("/admin/users/tess/password", json={"password": PW}, headers=admin)
        assert r.status_code == 200, r.text  # → credential-change (admin) + sessions-revoked
        r = http.put("/admin/users/tess/roles", json={"roles": ["admin"]}, headers=admin)
        assert r.status_code == 200, r.text  # → token-claims-change
        assert http.post("/admin/users/tess/disable", headers=admin).status_code == 200
        assert http.post("/admin/users/tess/enable", headers=admin).status_code == 200
        s4 = login(served, "sam")
        assert http.post("/logout-all", headers=bearer(s4["access_token"])).status_code == 200
        # a refresh storm: the risk engine ends the session and notifies
        s5 = login(served, "sam")
        rt = s5["refresh_token"]
        for _ in range(4):
            r = _refresh(served, rt)
            if r.status_code != 200:
                break
            rt = r.json()["refresh_token"]
        assert r.status_code == 400 and "session ended" in r.json()["error_description"]
    got = [(event_of(c), c["sub_id"]) for c in poll_all(served, token, stream).values()]

    def find(etype: str, pred: Any = lambda e, s: True) -> dict[str, Any]:
        for (t, e), s in got:
            if t == etype and pred(e, s):
                return e
        raise AssertionError(f"no {etype} among {[(t, e, s) for (t, e), s in got]}")

    def user(s: dict[str, Any]) -> str | None:
        return s.get("sub") or s.get("user", {}).get("sub")

    find(SESSION_REVOKED, lambda e, s: e["initiating_entity"] == "user" and user(s) == "sam")
    find(SESSION_REVOKED, lambda e, s: s.get("session", {}).get("id") == sid2)
    reuse = find(SESSION_REVOKED, lambda e, s: "reuse" in e["reason_admin"]["en"])
    assert reuse["initiating_entity"] == "policy"
    assert find(CREDENTIAL_CHANGE, lambda e, s: e["initiating_entity"] == "user")
    assert find(CREDENTIAL_CHANGE, lambda e, s: e["initiating_entity"] == "admin")
    claims_change = find(TOKEN_CLAIMS_CHANGE, lambda e, s: user(s) == "tess")
    assert claims_change["claims"] == {"roles": ["admin"]}
    find(ACCOUNT_DISABLED, lambda e, s: user(s) == "tess")
    find(ACCOUNT_ENABLED, lambda e, s: user(s) == "tess")
    find(SESSIONS_REVOKED, lambda e, s: user(s) == "sam")
    find(SESSION_REVOKED, lambda e, s: s.get("format") == "iss_sub" and s["sub"] == "sam")
    risk = find(SESSION_REVOKED, lambda e, s: "reason_user" in e)
    assert "refresh" in risk["reason_admin"]["en"]
    level = find(RISK_LEVEL_CHANGE, lambda e, s: user(s) == "sam")
    assert level["principal"] == "SESSION" and level["current_level"] in ("MEDIUM", "HIGH")


def test_cli_changes_to_the_store_reach_the_streams(served: Served) -> None:
    """``tokenward user disable|enable|passwd|roles`` and ``session revoke`` change the store
    directly; they queue the same SETs (signed with the stored keys)."""
    token = client_token(served)
    stream = create_stream(served, token, {"method": POLL}, ALL_EVENTS)
    add_user(served, "vic")
    sid = _sid(served, login(served, "vic")["access_token"])

    def cli(*args: str, stdin: str | None = None) -> None:
        done = subprocess.run(
            [str(BIN), *args],
            cwd=served.cwd,  # type: ignore[attr-defined]
            env=clean_env(_settings(served.port)),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    cli("session", "revoke", "--", sid)  # a sid may start with "-"
    cli("user", "roles", "vic", "admin")
    cli("user", "passwd", "vic", "--password-stdin", stdin=PW + " new\n")
    cli("user", "disable", "vic")
    cli("user", "enable", "vic")
    got = [
        (event_of(c)[0], c["sub_id"], c["iss"]) for c in poll_all(served, token, stream).values()
    ]
    assert all(iss == served.base for _, _, iss in got)
    kinds = [etype for etype, _, _ in got]
    assert kinds == [
        SESSION_REVOKED,  # the session
        TOKEN_CLAIMS_CHANGE,
        CREDENTIAL_CHANGE,
        SESSION_REVOKED,  # every session of the user (passwd)
        SESSIONS_REVOKED,
        ACCOUNT_DISABLED,
        SESSION_REVOKED,  # every session of the user (disable)
        SESSIONS_REVOKED,
        ACCOUNT_ENABLED,
    ]
    assert got[0][1]["session"]["id"] == sid


def _sid(s: Served, access_token: str) -> str:
    import base64

    import orjson

    payload = access_token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sid"])


def test_kill9_mid_delivery_loses_no_acknowledged_event(tmp_path: Path, receiver: Receiver) -> None:
    """Receiver answers 503; five logouts are acknowledged; the server is SIGKILLed while it
    retries, restarted on the same store; the receiver, now up, gets each event once after
    deduplication by ``jti``."""
    port = free_port()
    settings = _settings(port)
    first = launch(settings, cwd=tmp_path, port=port)
    try:
        first.wait_ready()
        setup(first)
        token = client_token(first)
        create_stream(first, token, {"method": PUSH, "endpoint_url": receiver.url}, ALL_EVENTS)
        receiver.status = 503
        sids = []
        with httpx.Client(base_url=first.base, timeout=20) as http:
            r = http.post(
                "/admin/users",
                json={"username": "una", "password": PW},
                headers=bearer(admin_token(http)),
            )
            assert r.status_code in (200, 201)
            for _ in range(5):
                s = login(first, "una")
                sids.append(_sid(first, s["access_token"]))
                assert http.post("/logout", headers=bearer(s["access_token"])).status_code == 200
        deadline = time.monotonic() + 10
        while receiver.attempts < 5 and time.monotonic() < deadline:
            time.sleep(0.02)  # the receiver's thread counts the refused attempts
        assert receiver.attempts >= 5 and receiver.bodies() == []
    finally:
        first.kill9()
    receiver.status = 202
    with serve(settings, cwd=tmp_path, port=port) as second:
        keys = jwks(second)
        deadline = time.monotonic() + 60  # a delivery claimed at the kill waits out its lease
        while time.monotonic() < deadline:
            seen = {verify_set(keys, b)["jti"]: verify_set(keys, b) for b in receiver.bodies()}
            revoked = {
                c["sub_id"]["session"]["id"]
                for c in seen.values()
                if SESSION_REVOKED in c["events"] and "session" in c["sub_id"]
            }
            if revoked >= set(sids):
                break
            time.sleep(0.05)
        assert revoked == set(sids)
        per_session = [
            c["sub_id"]["session"]["id"] for c in seen.values() if "session" in c["sub_id"]
        ]
        assert sorted(per_session) == sorted(sids)  # each exactly once after dedup by jti
        print(f"after SIGKILL and restart: {len(seen)} distinct SETs delivered, "
              f"{len(receiver.bodies())} POSTs accepted")  # fmt: skip

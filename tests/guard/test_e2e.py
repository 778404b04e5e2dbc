"""The example APIs against a live ``tokenward serve`` over real sockets, following its
revocation feed by long-poll and (the FastAPI example) by SSE.

Each example app runs in this process on its own loopback port (uvicorn / werkzeug threads)
with a guard Verifier on a FrozenClock, so the staleness limit is crossed by moving the clock,
not by waiting. The server is a real subprocess with a temporary SQLite store and none of
the caller's ``TOKENWARD_*`` variables.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.examples import BIN, EXAMPLES, PASSWORD, RunningApp, Server, run_app, start_server
from support.wait import LIVENESS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


# every example on the long-poll feed; the SSE feed (one event-stream connection) through the
# FastAPI example, against the same real server
MODES = [(name, "longpoll") for name in EXAMPLES] + [("fastapi", "sse")]


@pytest.fixture(params=MODES, ids=[f"{name}-{mode}" for name, mode in MODES])
def app(request: pytest.FixtureRequest, server: Server) -> Iterator[RunningApp]:
    name, mode = request.param
    a = run_app(name, server, feed_mode=mode)
    assert a.verifier.mirror is not None and a.verifier.mirror.mode == mode
    yield a
    a.stop()


def rejected_within(app: RunningApp, token: str, limit: float = LIVENESS) -> float | None:
    """Seconds until the API answers 401 for ``token`` (None: not within ``limit``). A liveness
    wait: how fast a revocation propagates is measured in ``bench/propagation.py``."""
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) <= limit:
        r = app.get(token)
        if r.status_code == 401:
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            return elapsed
        assert r.status_code == 200
        time.sleep(0.01)
    return None


def test_login_call_then_session_revocation(app: RunningApp, server: Server):
    pair = server.login()
    token = pair["access_token"]
    r = app.get(token)
    assert r.status_code == 200 and r.json()["sub"] == "alice"
    if app.name == "django":
        assert app.get(token, "/api/orders").status_code == 200
    sid = _sid_of(token)
    d = httpx.delete(f"{server.base}/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert d.status_code in (200, 204), d.text
    lag = rejected_within(app, token)
    assert lag is not None, f"{app.name}: revoked session still accepted after {LIVENESS} s"
    r = httpx.get(app.base + "/orders")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] in ('Bearer realm="orders"', 'Bearer realm="tokenward"')


def _sid_of(token: str) -> str:
    import base64

    import orjson

    payload = token.split(".")[1]
    return str(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


def test_logout_everywhere(app: RunningApp, server: Server):
    tokens = [server.login()["access_token"] for _ in range(3)]
    assert all(app.get(t).status_code == 200 for t in tokens)
    r = httpx.post(f"{server.base}/logout-all", headers={"Authorization": f"Bearer {tokens[0]}"})
    assert r.status_code == 200, r.text
    for t in tokens:
        assert rejected_within(app, t) is not None
    other = server.login(user="root")["access_token"]
    assert app.get(other).status_code == 200  # other subjects unaffected


def test_key_rotation_without_restart(app: RunningApp, server: Server):
    admin = server.login(user="root", scope="admin")["access_token"]
    auth = {"Authorization": f"Bearer {admin}"}
    before = server.login()["access_token"]
    assert app.get(before).status_code == 200
    for _ in range(2):  # the second rotation signs with a key the API has never seen
        r = httpx.post(f"{server.base}/admin/keys/rotate", headers=auth)
        assert r.status_code == 200, r.text
        app.advance(31)  # past the unknown-kid cooldown
        fresh = server.login()["access_token"]
        assert app.get(fresh).status_code == 200
    assert app.get(before).status_code == 200  # retired keys stay published


def test_server_unreachable_then_fail_closed(tmp_path: Path):
    srv = start_server(tmp_path)
    apps = []
    try:
        apps = [run_app(name, srv, max_staleness=30.0) for name in EXAMPLES]
        token = srv.login()["access_token"]
        assert all(a.get(token).status_code == 200 for a in apps)
        srv.stop()  # the authorization server goes away
        for a in apps:
            a.clock.advance(29)
            assert a.get(token).status_code == 200  # cached verification continues
            a.clock.advance(2)
            r = a.get(token)
            assert r.status_code == 503, (a.name, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1
    finally:
        for a in apps:
            a.stop()
        srv.stop()


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- the authorization model end to end ---------------------------------------------------------
def _admin_headers(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.login(user='admin', scope='admin')['access_token']}"}


def _admin_call(server: Server, method: str, path: str, body: dict[str, Any]) -> Any:
    r = httpx.request(method, f"{server.base}{path}", json=body, headers=_admin_headers(server))
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_rfc8707_token_for_one_api_is_refused_by_the_guard_of_another(server: Server):
    """Two example APIs, one per resource: the orders API ("api") and a billing API."""
    billing = "https://billing.example"
    _admin_call(
        server,
        "POST",
        "/admin/resources",
        {"identifier": billing, "name": "Billing", "scopes": ["billing:read"]},
    )
    orders_app = run_app("fastapi", server)
    billing_app = run_app("fastapi", server, audience=billing)
    try:
        token = server.login()["access_token"]  # alice, scope read, aud "api"
        assert orders_app.get(token).status_code == 200
        refused = billing_app.get(token)
        assert refused.status_code == 401
        assert "aud" in refused.headers["WWW-Authenticate"]
    finally:
        orders_app.stop()
        billing_app.stop()


def test_role_change_with_now_reaches_the_guard_through_the_feed(server: Server):
    """``tokenward user roles … --now`` (the CLI, writing the server's store) revokes the
    affected session; the sid event reaches the API's guard through the feed."""
    _admin_call(
        server,
        "POST",
        "/admin/users",
        {"username": "carol", "password": PASSWORD, "roles": ["member"]},
    )
    app = run_app("fastapi", server)
    try:
        token = server.login(user="carol")["access_token"]
        assert app.get(token).status_code == 200
        out = cli(server.env, "user", "roles", "carol", "", "--now")
        assert "revoked 1 session(s)" in out
        assert rejected_within(app, token) is not None
    finally:
        app.stop()


def test_encrypted_tokens_end_to_end_for_a_resource_with_a_key(server: Server):
    """A resource registers its public P-256 key: its tokens are a signed JWT nested in a
    JWE (ECDH-ES+A256KW, A256GCM); its guard decrypts with the private key."""
    from joserfc.jwk import ECKey

    from tokenward.errors import InvalidToken
    from tokenward.guard import Verifier

    vault = "https://vault.example"
    key = ECKey.generate_key("P-256")
    public, private = key.as_dict(private=False), key.as_dict(private=True)
    _admin_call(
        server,
        "POST",
        "/admin/resources",
        {"identifier": vault, "name": "Vault", "scopes": ["vault:read"], "encryption_key": public},
    )
    _admin_call(server, "POST", "/admin/roles", {"name": "vaulter", "scopes": ["vault:read"]})
    _admin_call(server, "PUT", "/admin/users/root/roles", {"roles": ["admin", "member", "vaulter"]})
    _admin_call(
        server,
        "PATCH",
        "/admin/clients/web",
        {"resources": ["api", vault], "scopes": ["read", "write", "vault:read"]},
    )
    r = httpx.post(
        f"{server.base}/login",
        json={
            "username": "root",
            "password": PASSWORD,
            "client_id": "web",
            "resource": vault,
            "scope": "vault:read",
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 4  # compact JWE
    common = dict(jwks_url=f"{server.base}/.well-known/jwks.json", issuer=server.base)
    with Verifier(audience=vault, decryption_key=private, **common) as reader:
        claims = reader.verify(token)
        assert claims.sub == "root" and claims.scope == "vault:read" and claims.aud == (vault,)
    with Verifier(audience=vault, **common) as blind, pytest.raises(InvalidToken):
        blind.verify(token)

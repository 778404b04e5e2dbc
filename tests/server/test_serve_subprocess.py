"""``tokenward serve`` as a real subprocess on SQLite in a fresh directory, over a real socket:
it starts (and restarts on its existing store), login → refresh → revoke with httpx, Authlib's
OAuth2 client (password grant, rotation, revoke, introspect) and PyJWT's ``PyJWKClient``
verifying our access tokens from the live JWKS. The start-up time is a figure of
``bench/startup.py``, not a bound here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from support.serve import free_port, serve

ADMIN_PW = "first-start-password"


@dataclass
class Live:
    base: str
    cwd: Path


def _settings(port: int) -> dict[str, str]:
    """Only the admin password and the issuer (its own address): the default SQLite store
    under the working directory's ``var/``."""
    return {"TOKENWARD_ADMIN_PASSWORD": ADMIN_PW, "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("serve")
    port = free_port()
    with serve(_settings(port), cwd=cwd, port=port) as first:
        yield Live(first.base, cwd)


def test_serve_restarts_on_its_existing_store(live: Live) -> None:
    """A second server on the directory the first one created starts and serves the same
    keys (the schema, keys and admin already exist: nothing is created twice)."""
    jwks = httpx.get(f"{live.base}/.well-known/jwks.json").json()
    port = free_port()
    with serve(_settings(port), cwd=live.cwd, port=port) as again:
        assert httpx.get(f"{again.base}/healthz").status_code == 200
        assert httpx.get(f"{again.base}/.well-known/jwks.json").json() == jwks


def test_first_start_creates_db_and_kek_file_0600(live: Live) -> None:
    db = live.cwd / "var" / "tokenward.db"
    kek = live.cwd / "var" / "tokenward.db.kek"
    assert db.is_file() and kek.is_file()
    assert kek.stat().st_mode & 0o777 == 0o600


def test_login_refresh_revoke_over_http(live: Live) -> None:
    with httpx.Client(base_url=live.base) as http:
        r = http.post(
            "/token",
            data={
                "grant_type": "password",
                "username": "admin",
                "password": ADMIN_PW,
                "client_id": "tokenward-console",
            },
        )
        assert r.status_code == 200, r.text
        tok = r.json()
        r2 = http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tok["refresh_token"],
                "client_id": "tokenward-console",
            },
        )
        assert r2.status_code == 200, r2.text
        new = r2.json()
        assert (
            http.post(
                "/revoke", data={"token": new["refresh_token"], "client_id": "tokenward-console"}
            ).status_code
            == 200
        )
        r3 = http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": new["refresh_token"],
                "client_id": "tokenward-console",
            },
        )
        assert r3.status_code == 400 and r3.json()["error"] == "invalid_grant"
        bad = http.get("/userinfo", headers={"Authorization": f"Bearer {new['access_token']}"})
        assert bad.status_code == 401


def test_authlib_client_and_pyjwkclient_interop(live: Live) -> None:
    from authlib.integrations.httpx_client import OAuth2Client

    console = OAuth2Client(client_id="tokenward-console", token_endpoint_auth_method="none")
    admin_tok = console.fetch_token(
        f"{live.base}/token",
        grant_type="password",
        username="admin",
        password=ADMIN_PW,
        scope="admin",
    )
    assert admin_tok["scope"] == "admin"
    auth = {"Authorization": f"Bearer {admin_tok['access_token']}"}
    # the authorization model over the admin API: an API, a role holding its scope, the
    # admin given that role, and a client allowed that API and scope
    for path, method, body in [
        (
            "/admin/resources",
            "POST",
            {"identifier": "api", "name": "API", "scopes": ["read"], "default_scopes": ["read"]},
        ),
        ("/admin/roles", "POST", {"name": "reader", "scopes": ["read"]}),
        ("/admin/users/admin/roles", "PUT", {"roles": ["admin", "reader"]}),
    ]:
        r = httpx.request(method, f"{live.base}{path}", headers=auth, json=body)
        assert r.status_code in (200, 201), r.text
    created = httpx.post(
        f"{live.base}/admin/clients",
        headers=auth,
        json={
            "client_id": "interop",
            "grants": ["password", "refresh_token"],
            "resources": ["api"],
            "scopes": ["read"],
        },
    )
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]

    updates: list[dict[str, object]] = []
    client = OAuth2Client(
        client_id="interop",
        client_secret=secret,
        update_token=lambda token, refresh_token=None, access_token=None: updates.append(token),
    )
    token = client.fetch_token(
        f"{live.base}/token", grant_type="password", username="admin", password=ADMIN_PW
    )
    first_rt = token["refresh_token"]
    refreshed = client.refresh_token(f"{live.base}/token", refresh_token=first_rt)
    assert refreshed["refresh_token"] != first_rt  # rotated, and Authlib keeps the new one

    info = client.introspect_token(f"{live.base}/introspect", token=refreshed["access_token"])
    assert info.status_code == 200 and info.json()["active"] is True
    assert info.json()["client_id"] == "interop"

    # PyJWT verifies the access token from the live JWKS (kid lookup, ES256, at+jwt)
    jwks = jwt.PyJWKClient(f"{live.base}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(refreshed["access_token"])
    claims = jwt.decode(
        refreshed["access_token"], key.key, algorithms=["ES256"], audience="api", issuer=live.base
    )
    assert claims["sub"] == "admin" and claims["client_id"] == "interop"

    revoked = client.revoke_token(
        f"{live.base}/revoke", token=refreshed["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200
    after = client.introspect_token(f"{live.base}/introspect", token=refreshed["refresh_token"])
    assert after.json() == {"active": False}

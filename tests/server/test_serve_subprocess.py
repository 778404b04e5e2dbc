"""``tokenward serve`` as a real subprocess on SQLite in a fresh directory, over a real socket:
startup time to the first 200 (DESIGN §5: ≤ 2 s), login → refresh → revoke with httpx,
Authlib's OAuth2 client (password grant, rotation, revoke, introspect) and PyJWT's
``PyJWKClient`` verifying our access tokens from the live JWKS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

ADMIN_PW = "first-start-password"
STARTUP_BOUND = 2.0
BIN = Path(sys.executable).parent / "tokenward"


@dataclass
class Live:
    base: str
    startup: float
    cwd: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start ``tokenward serve`` and wait for the first 200 from /healthz."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        cwd=cwd,
        env={**env, "TOKENWARD_ISSUER": base},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = start + 20
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"tokenward serve exited: {err[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return proc, base, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.02)
    _stop(proc)
    pytest.fail("server did not answer within 20 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env["TOKENWARD_ADMIN_PASSWORD"] = ADMIN_PW
    return env


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("serve")
    proc, base, startup = _start(cwd, _env())
    print(f"\ntokenward serve (fresh directory): first 200 after {startup:.3f} s")
    try:
        yield Live(base, startup, cwd)
    finally:
        _stop(proc)


def test_startup_to_first_200_within_bound(live: Live) -> None:
    """DESIGN §5: a (re)start on an existing SQLite store answers within 2 s. The first start
    in a fresh directory also creates the schema, keys and admin; it is printed, not bound."""
    proc, _base, startup = _start(live.cwd, _env())
    _stop(proc)
    print(f"\ntokenward serve (existing store): first 200 after {startup:.3f} s")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if startup > STARTUP_BOUND and load > cores:
        # a wall-clock bound only means something on a machine that is not overloaded
        pytest.skip(f"startup {startup:.2f} s with load average {load:.1f} on {cores} cores")
    assert startup <= STARTUP_BOUND, f"startup took {startup:.2f} s (load {load:.1f})"


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

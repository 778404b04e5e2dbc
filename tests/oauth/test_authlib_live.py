"""Authlib's OAuth2Session (a client nobody here wrote) against a real ``tokenward serve`` on
SQLite, PostgreSQL and Redis: authorization code + PKCE S256 through the pages, ID token
validation with the published JWKS (nonce), refresh, revoke."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken

from support.oauth_live import SPA, Browser, Live, start


@pytest.fixture(scope="module", params=["sqlite", "postgres", "redis"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    yield from start(request.param, tmp_path_factory.mktemp(f"oauth-{request.param}"))


def test_authlib_code_pkce_id_token_refresh_revoke(live: Live) -> None:
    redirect = "http://127.0.0.1:43123/cb"  # any loopback port (RFC 8252 §7.3)
    meta = httpx.get(f"{live.base}/.well-known/openid-configuration").json()
    client = OAuth2Session(
        client_id=SPA,
        redirect_uri=redirect,
        scope="openid profile",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    url, _state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = Browser(live)
    try:
        location = browser.authorize(url)
    finally:
        browser.close()
    assert location.startswith(redirect + "?")
    assert f"iss={live.base}".replace(":", "%3A").replace("/", "%2F") in location
    token = client.fetch_token(
        meta["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer" and token["refresh_token"]
    # the ID token verifies against the published JWKS, with our nonce
    jwks = JsonWebKey.import_key_set(httpx.get(meta["jwks_uri"]).json())
    claims = JsonWebToken(["RS256"]).decode(
        token["id_token"],
        jwks,
        claims_options={
            "iss": {"essential": True, "value": live.base},
            "aud": {"essential": True, "value": SPA},
            "nonce": {"essential": True, "value": nonce},
        },
    )
    claims.validate()
    assert claims["sub"] == "alice" and claims["sid"]
    info = client.get(meta["userinfo_endpoint"]).json()
    assert info == {"sub": "alice", "preferred_username": "alice"}
    old = token["refresh_token"]
    new = client.refresh_token(meta["token_endpoint"], refresh_token=old)
    assert new["refresh_token"] != old and new["access_token"]
    r = client.revoke_token(meta["revocation_endpoint"], token=new["refresh_token"])
    assert r.status_code == 200
    after = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": new["refresh_token"],
            "client_id": SPA,
        },
    )
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_prompt_none_with_and_without_the_sign_in_cookie(live: Live) -> None:
    client = OAuth2Session(
        client_id=SPA,
        redirect_uri="http://127.0.0.1/cb",
        scope="openid",
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = client.create_authorization_url(f"{live.base}/authorize", code_verifier=verifier)
    browser = Browser(live)
    try:
        r = browser.get(url + "&prompt=none")
        assert r.status_code == 302 and "error=login_required" in r.headers["location"]
        browser.authorize(url)
        r = browser.get(url + "&prompt=none")
        assert r.status_code == 302 and "code=" in r.headers["location"]
    finally:
        browser.close()


def test_code_reuse_revokes_on_a_real_store(live: Live) -> None:
    client = OAuth2Session(
        client_id=SPA,
        redirect_uri="http://127.0.0.1/cb",
        scope="openid",
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = client.create_authorization_url(f"{live.base}/authorize", code_verifier=verifier)
    browser = Browser(live)
    try:
        location = browser.authorize(url)
    finally:
        browser.close()
    code = httpx.URL(location).params["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1/cb",
        "code_verifier": verifier,
        "client_id": SPA,
    }
    first = httpx.post(f"{live.base}/token", data=form)
    assert first.status_code == 200
    at = first.json()["access_token"]
    ok = httpx.get(f"{live.base}/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert ok.status_code == 200
    second = httpx.post(f"{live.base}/token", data=form)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    gone = httpx.get(f"{live.base}/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert gone.status_code == 401

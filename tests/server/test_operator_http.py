"""Operator-facing HTTP details: JWKS caching, the no-credentials answer, throttled sign-ins,
refresh-token introspection times, the local /docs and the root redirect."""

from __future__ import annotations

import re
from typing import Any

from support.server import Server, bearer

# RFC 6750 §3.1 / RFC 9449 §7.1: one bare challenge per scheme the server accepts
NO_CREDENTIALS_CHALLENGE = 'Bearer realm="tokenward", DPoP algs="ES256 EdDSA Ed25519 RS256 PS256"'


def test_jwks_etag_and_if_none_match_answer_304(server: Server) -> None:
    r = server.http.get("/.well-known/jwks.json")
    etag = r.headers["ETag"]
    assert r.status_code == 200 and re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = server.http.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    weak = server.http.get("/.well-known/jwks.json", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    other = server.http.get("/.well-known/jwks.json", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.json()["keys"]

    async def rotate() -> None:
        await server.runtime.check_keys(force=True)

    server.run(rotate)  # a rotation changes the set and its tag
    rotated = server.http.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert rotated.status_code == 200 and rotated.headers["ETag"] != etag


def test_missing_bearer_token_is_401_unauthorized_without_error_attribute(server: Server) -> None:
    for path in ("/userinfo", "/sessions", "/admin/users"):
        r = server.http.get(path)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == NO_CREDENTIALS_CHALLENGE
        assert r.json() == {
            "error": "unauthorized",
            "error_description": "a bearer token is required",
        }
    # a token that was sent but is wrong still says invalid_token (RFC 6750 §3.1)
    r = server.http.get("/userinfo", headers=bearer("x.y.z"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_throttled_sign_in_is_429_invalid_request_with_retry_after(server: Server) -> None:
    for _ in range(5):
        assert server.password(password="wrong").status_code == 400
    r = server.password()
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "too many sign-in attempts",
    }


def test_introspected_refresh_token_iat_is_its_issue_time_auth_time_the_session_start(
    server: Server,
) -> None:
    first = server.login()
    start = server.clock.now()
    server.clock.advance(120)
    rotated = server.refresh(first["refresh_token"]).json()
    body = server.http.post(
        "/introspect", data={"token": rotated["refresh_token"]}, headers=server.svc()
    ).json()
    assert body["active"] is True
    assert body["iat"] == int(start) + 120
    assert body["auth_time"] == int(start)


def test_docs_serve_swagger_ui_from_local_assets_never_a_cdn(server: Server) -> None:
    r = server.http.get("/docs")
    assert r.status_code == 200
    html = r.text
    assert "/docs/assets/swagger-ui-bundle.js" in html and "/docs/assets/swagger-ui.css" in html
    # every script and stylesheet is same-origin
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/"), url
    assert "cdn" not in html.lower()
    js = server.http.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert server.http.get("/docs/assets/swagger-ui.css").status_code == 200


def test_root_redirects_to_console(server: Server) -> None:
    r = server.http.get("/", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["Location"] == "/console"


def test_metrics_token_protects_metrics_and_unset_is_open(server_factory: Any) -> None:
    open_server = server_factory()
    assert open_server.http.get("/metrics").status_code == 200
    guarded = server_factory(metrics_token="scrape-secret-1")
    r = guarded.http.get("/metrics")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == NO_CREDENTIALS_CHALLENGE
    assert r.json()["error"] == "unauthorized"
    wrong = guarded.http.get("/metrics", headers=bearer("scrape-secret-2"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
    ok = guarded.http.get("/metrics", headers=bearer("scrape-secret-1"))
    assert ok.status_code == 200 and "tokenward_" in ok.text

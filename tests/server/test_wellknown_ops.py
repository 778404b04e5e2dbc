"""JWKS (RFC 7517 / OIDC Discovery §3), RFC 8414 metadata, OpenAPI, health and metrics."""

from __future__ import annotations

from support.server import ISSUER, Server
from tokenward.server.metrics import HEALTH_MAX_AGE

PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def test_jwks_has_public_keys_only_with_unique_kid_use_and_alg(server: Server) -> None:
    r = server.http.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert "max-age=300" in r.headers["cache-control"]
    keys = r.json()["keys"]
    # active + next access-token keys (publish-before-sign) + the RS256 ID-token key
    assert sorted(k["alg"] for k in keys) == ["ES256", "ES256", "RS256"]
    assert len({k["kid"] for k in keys}) == len(keys)
    for k in keys:
        assert not PRIVATE & set(k)
        assert k["use"] == "sig"


def test_rfc8414_metadata_issuer_is_exact_and_served_at_both_paths(server: Server) -> None:
    a = server.http.get("/.well-known/oauth-authorization-server").json()
    b = server.http.get("/.well-known/openid-configuration").json()
    assert a == b
    assert a["issuer"] == ISSUER
    assert a["token_endpoint"] == f"{ISSUER}/token"
    assert a["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert "client_secret_basic" in a["token_endpoint_auth_methods_supported"]
    assert set(a["grant_types_supported"]) == {
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
        "password",
        "refresh_token",
        "client_credentials",
    }


def test_openapi_and_docs(server: Server) -> None:
    spec = server.http.get("/openapi.json").json()
    for path in ("/token", "/revoke", "/introspect", "/login", "/sessions", "/revocations"):
        assert path in spec["paths"]
    form = spec["paths"]["/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in form
    assert server.http.get("/docs").status_code == 200


def test_healthz_and_store_outage(server: Server) -> None:
    now = [100.0]
    server.runtime.health.timer = lambda: now[0]
    assert server.http.get("/healthz").json() == {"status": "ok"}
    server.store.set_available(False)
    # the store answered a ping less than HEALTH_MAX_AGE ago: still ready
    now[0] += HEALTH_MAX_AGE / 2
    assert server.http.get("/healthz").status_code == 200
    now[0] += HEALTH_MAX_AGE
    r = server.http.get("/healthz")
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    assert server.http.get("/healthz").status_code == 503  # a failure is never remembered
    server.store.set_available(True)
    assert server.http.get("/healthz").status_code == 200


def test_unknown_route_is_json_404(server: Server) -> None:
    r = server.http.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_request_id_is_echoed_or_made(server: Server) -> None:
    assert (
        server.http.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"]
        == "abc-1"
    )
    made = server.http.get("/healthz", headers={"X-Request-ID": "bad id\x7f"}).headers
    assert made["x-request-id"] != "bad id" and len(made["x-request-id"]) == 16

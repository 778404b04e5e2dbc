"""DPoP (RFC 9449) at the server: ``/token`` for every grant, bound refresh tokens for public
clients, ``/userinfo`` with the DPoP scheme, ``/introspect``'s ``cnf``, ``/revoke``, metadata,
nonces, the per-client requirement and the stolen-token scenario."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from support.server import ISSUER, Server
from tokenward.dpop import DPoPKey, access_token_hash
from tokenward.events import add_listener

TOKEN_URL = f"{ISSUER}/token"
PASSWORD_FORM = {
    "grant_type": "password",
    "username": "alice",
    "password": "correct horse battery",
    "client_id": "app",
}
USERINFO_URL = f"{ISSUER}/userinfo"


def payload(jwt: str) -> dict[str, Any]:
    seg = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))  # type: ignore[no-any-return]


def proof(server: Server, key: DPoPKey, htm: str = "POST", url: str = TOKEN_URL, **kw: Any) -> str:
    kw.setdefault("iat", server.clock.now())
    return key.proof(htm, url, **kw)


def dpop_login(server: Server, key: DPoPKey, client_id: str = "app") -> dict[str, Any]:
    r = server.http.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse battery",
            "client_id": client_id,
        },
        headers={"DPoP": proof(server, key)},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def dpop_refresh(server: Server, rt: str, key: DPoPKey | None, **kw: Any) -> Any:
    headers = {"DPoP": proof(server, key, **kw)} if key is not None else {}
    return server.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "app"},
        headers=headers,
    )


def userinfo(server: Server, at: str, key: DPoPKey | None, scheme: str = "DPoP", **kw: Any) -> Any:
    headers = {"Authorization": f"{scheme} {at}"}
    if key is not None:
        kw.setdefault("access_token", at)
        headers["DPoP"] = proof(server, key, "GET", USERINFO_URL, **kw)
    return server.http.get("/userinfo", headers=headers)


@pytest.fixture
def events() -> Any:
    seen: list[tuple[str, dict[str, Any]]] = []
    remove = add_listener(lambda name, fields: seen.append((name, dict(fields))))
    yield seen
    remove()


# ------------------------------------------------------------------ /token
def test_a_proof_at_token_binds_the_access_token_and_says_token_type_dpop(server: Server) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    assert body["token_type"] == "DPoP"
    assert payload(body["access_token"])["cnf"] == {"jkt": key.jkt}


def test_without_a_proof_tokens_stay_bearer(server: Server) -> None:
    body = server.login()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in payload(body["access_token"])


def test_client_credentials_with_a_proof_is_bound(server: Server) -> None:
    key = DPoPKey.generate("EdDSA")
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={**server.svc(), "DPoP": proof(server, key)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    assert payload(r.json()["access_token"])["cnf"]["jkt"] == key.jkt


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda s, k: "not-a-jwt", "compact"),
        (lambda s, k: proof(s, k, "GET"), "htm"),
        (lambda s, k: proof(s, k, url=f"{ISSUER}/revoke"), "htu"),
        (lambda s, k: proof(s, k, iat=s.clock.now() - 3600), "too old"),
        (lambda s, k: proof(s, k, iat=s.clock.now() + 3600), "future"),
    ],
)
def test_an_invalid_proof_at_token_is_invalid_dpop_proof(
    server: Server, make: Callable[[Server, DPoPKey], str], why: str
) -> None:
    r = server.http.post(
        "/token",
        data=PASSWORD_FORM,
        headers={"DPoP": make(server, DPoPKey.generate())},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_dpop_proof"
    assert why in r.json()["error_description"]


def test_htu_differing_only_in_query_is_accepted_at_token(server: Server) -> None:
    key = DPoPKey.generate()
    p = key.proof("POST", TOKEN_URL, iat=server.clock.now())
    # the server compares without query: a proof naming ?x=1 is the same endpoint
    r = server.http.post(
        "/token?x=1",
        data=PASSWORD_FORM,
        headers={"DPoP": p},
    )
    assert r.status_code == 200, r.text


def test_a_replayed_proof_is_refused(server: Server) -> None:
    key = DPoPKey.generate()
    p = proof(server, key, jti="once")
    data = PASSWORD_FORM
    assert server.http.post("/token", data=data, headers={"DPoP": p}).status_code == 200
    r = server.http.post("/token", data=data, headers={"DPoP": p})
    assert r.status_code == 400 and "replay" in r.json()["error_description"]


def test_two_dpop_headers_are_refused(server: Server) -> None:
    key = DPoPKey.generate()
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers=[*server.svc().items(), ("DPoP", proof(server, key)), ("DPoP", proof(server, key))],
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"


def test_a_client_registered_with_dpop_required_must_send_a_proof(server: Server) -> None:
    async def require() -> None:
        await server.runtime.clients.update("app", dpop_bound_access_tokens=True)

    server.run(require)
    r = server.password()
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"
    assert dpop_login(server, DPoPKey.generate())["token_type"] == "DPoP"


def test_metadata_lists_the_dpop_algorithms(server: Server) -> None:
    meta = server.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["dpop_signing_alg_values_supported"] == [
        "ES256",
        "EdDSA",
        "Ed25519",
        "RS256",
        "PS256",
    ]


# ------------------------------------------------------------------ refresh binding
def test_a_public_clients_refresh_is_bound_to_the_key_for_the_session(server: Server) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    for _ in range(3):
        r = dpop_refresh(server, body["refresh_token"], key)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "DPoP"
        assert payload(body["access_token"])["cnf"]["jkt"] == key.jkt


def test_a_bound_refresh_without_a_proof_is_invalid_dpop_proof_and_keeps_the_session(
    server: Server, events: list[tuple[str, dict[str, Any]]]
) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    r = dpop_refresh(server, body["refresh_token"], None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"
    assert ("dpop_key_mismatch", "no_proof") in [(n, f.get("reason")) for n, f in events]
    assert dpop_refresh(server, body["refresh_token"], key).status_code == 200


def test_a_bound_refresh_with_another_key_is_invalid_grant_and_keeps_the_session(
    server: Server, events: list[tuple[str, dict[str, Any]]]
) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    r = dpop_refresh(server, body["refresh_token"], DPoPKey.generate())
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert ("dpop_key_mismatch", "other_key") in [(n, f.get("reason")) for n, f in events]
    assert not any(n == "refresh_token_reuse" for n, _ in events)
    # not counted as reuse: the token was not consumed, the user refreshes as usual
    assert dpop_refresh(server, body["refresh_token"], key).status_code == 200


def test_a_confidential_clients_refresh_token_is_not_bound(server: Server) -> None:
    key = DPoPKey.generate()
    r = server.http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": "correct horse battery"},
        headers={**server.svc(), "DPoP": proof(server, key)},
    )
    assert r.json()["token_type"] == "DPoP"
    r2 = server.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"]},
        headers=server.svc(),
    )
    assert r2.status_code == 200 and r2.json()["token_type"] == "Bearer"


# ------------------------------------------------------------------ /userinfo (RFC 9449 §7)
def test_userinfo_accepts_a_bound_token_with_the_dpop_scheme_and_proof(server: Server) -> None:
    key = DPoPKey.generate()
    at = dpop_login(server, key)["access_token"]
    r = userinfo(server, at, key)
    assert r.status_code == 200, r.text
    assert r.json()["sub"] == "alice"


def test_a_bound_token_sent_as_bearer_is_refused(server: Server) -> None:
    key = DPoPKey.generate()
    at = dpop_login(server, key)["access_token"]
    r = userinfo(server, at, None, scheme="Bearer")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('DPoP algs="ES256 EdDSA Ed25519 RS256 PS256"')
    assert "RFC 9449" in r.json()["error_description"]


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"access_token": "another token"}, "ath"),
        ({"url": f"{ISSUER}/sessions"}, "htu"),
        ({"htm": "POST"}, "htm"),
    ],
)
def test_userinfo_refuses_a_proof_that_does_not_fit(
    server: Server, kw: dict[str, Any], why: str
) -> None:
    key = DPoPKey.generate()
    at = dpop_login(server, key)["access_token"]
    headers = {"Authorization": f"DPoP {at}"}
    kw.setdefault("access_token", at)
    htm, url = kw.pop("htm", "GET"), kw.pop("url", USERINFO_URL)
    headers["DPoP"] = proof(server, key, htm, url, **kw)
    r = server.http.get("/userinfo", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_dpop_proof" and why in r.json()["error_description"]
    assert 'error="invalid_dpop_proof"' in r.headers["www-authenticate"]


def test_userinfo_refuses_a_proof_of_another_key_than_cnf(server: Server) -> None:
    at = dpop_login(server, DPoPKey.generate())["access_token"]
    r = userinfo(server, at, DPoPKey.generate())
    assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof"


def test_userinfo_with_the_dpop_scheme_needs_a_proof(server: Server) -> None:
    at = dpop_login(server, DPoPKey.generate())["access_token"]
    r = userinfo(server, at, None)
    assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof"


def test_a_replayed_resource_proof_is_refused(server: Server) -> None:
    key = DPoPKey.generate()
    at = dpop_login(server, key)["access_token"]
    p = proof(server, key, "GET", USERINFO_URL, access_token=at)
    headers = {"Authorization": f"DPoP {at}", "DPoP": p}
    assert server.http.get("/userinfo", headers=headers).status_code == 200
    r = server.http.get("/userinfo", headers=headers)
    assert r.status_code == 401 and "replay" in r.json()["error_description"]


def test_an_unbound_token_with_the_dpop_scheme_is_refused(server: Server) -> None:
    at = server.login()["access_token"]
    key = DPoPKey.generate()
    r = userinfo(server, at, key)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_an_unbound_token_keeps_working_as_bearer(server: Server) -> None:
    at = server.login()["access_token"]
    assert userinfo(server, at, None, scheme="Bearer").status_code == 200


# ------------------------------------------------------------------ introspect, revoke, admin
def test_introspection_returns_cnf_for_bound_tokens(server: Server) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    for token in (body["access_token"], body["refresh_token"]):
        r = server.http.post("/introspect", data={"token": token}, headers=server.svc())
        assert r.json()["active"] is True
        assert r.json()["cnf"] == {"jkt": key.jkt}
    at_info = server.http.post(
        "/introspect", data={"token": body["access_token"]}, headers=server.svc()
    ).json()
    assert at_info["token_type"] == "DPoP"


def test_revoking_a_bound_refresh_token_ends_the_session(server: Server) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    r = server.http.post("/revoke", data={"token": body["refresh_token"], "client_id": "app"})
    assert r.status_code == 200
    assert dpop_refresh(server, body["refresh_token"], key).json()["error"] == "invalid_grant"
    assert userinfo(server, body["access_token"], key).status_code == 401


def test_sessions_show_their_dpop_binding(server: Server) -> None:
    key = DPoPKey.generate()
    at = dpop_login(server, key)["access_token"]
    r = userinfo(server, at, key)
    assert r.status_code == 200
    headers = {"Authorization": f"DPoP {at}"}
    headers["DPoP"] = proof(server, key, "GET", f"{ISSUER}/sessions", access_token=at)
    sessions = server.http.get("/sessions", headers=headers).json()
    assert [s["dpop_jkt"] for s in sessions] == [key.jkt]


# ------------------------------------------------------------------ nonces (RFC 9449 §8)
def test_with_nonces_on_a_proof_without_one_gets_use_dpop_nonce_then_succeeds(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(dpop_nonce=True)
    key = DPoPKey.generate()
    data = PASSWORD_FORM
    r = server.http.post("/token", data=data, headers={"DPoP": proof(server, key)})
    assert r.status_code == 400 and r.json()["error"] == "use_dpop_nonce"
    nonce = r.headers["dpop-nonce"]
    r = server.http.post("/token", data=data, headers={"DPoP": proof(server, key, nonce=nonce)})
    assert r.status_code == 200, r.text
    assert r.headers["dpop-nonce"]
    at = r.json()["access_token"]
    r = userinfo(server, at, key)
    assert r.status_code == 401 and r.json()["error"] == "use_dpop_nonce"
    assert 'error="use_dpop_nonce"' in r.headers["www-authenticate"]
    assert userinfo(server, at, key, nonce=r.headers["dpop-nonce"]).status_code == 200


def test_without_nonces_no_nonce_is_asked(server: Server) -> None:
    key = DPoPKey.generate()
    assert dpop_login(server, key)["token_type"] == "DPoP"


# ------------------------------------------------------------------ the stolen-token scenario
def test_a_thief_with_copies_of_a_bound_access_and_refresh_token_gets_nothing(
    server: Server,
) -> None:
    user_key, thief_key = DPoPKey.generate(), DPoPKey.generate()
    body = dpop_login(server, user_key)
    at, rt = body["access_token"], body["refresh_token"]
    # the thief: the access token as bearer, with the DPoP scheme and his key, without proof
    assert userinfo(server, at, None, scheme="Bearer").status_code == 401
    assert userinfo(server, at, thief_key).status_code == 401
    assert userinfo(server, at, None).status_code == 401
    # the refresh token: without a proof, with his own key
    assert dpop_refresh(server, rt, None).status_code == 400
    assert dpop_refresh(server, rt, thief_key).status_code == 400
    # a thief who also copied one of the user's proofs: it names another endpoint and
    # another token, and a proof for /token is used once
    p = proof(server, user_key, access_token=at)
    stolen = server.http.get("/userinfo", headers={"Authorization": f"DPoP {at}", "DPoP": p})
    assert stolen.status_code == 401
    # the user keeps working
    assert userinfo(server, at, user_key).status_code == 200
    r = dpop_refresh(server, rt, user_key)
    assert r.status_code == 200
    assert userinfo(server, r.json()["access_token"], user_key).status_code == 200
    assert access_token_hash(at) != access_token_hash(r.json()["access_token"])


def test_the_admin_token_check_names_the_dpop_key(server: Server) -> None:
    key = DPoPKey.generate()
    body = dpop_login(server, key)
    admin = server.password("root", "admin password 1", scope="admin").json()["access_token"]
    for token in (body["access_token"], body["refresh_token"]):
        r = server.http.post(
            "/admin/tokens/verify",
            json={"token": token},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True and r.json()["dpop_jkt"] == key.jkt

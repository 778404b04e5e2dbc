"""RFC 9449 §10: an authorization request may carry ``dpop_jkt``; its code is then exchanged
only with a DPoP proof made with that key (``invalid_grant`` otherwise)."""

from __future__ import annotations

from typing import Any

import pytest

from support.oauth import Flow, jwt_claims, redirect_params, register
from support.server import ISSUER, Server
from tokenward.dpop import DPoPKey

TOKEN_URL = f"{ISSUER}/token"


@pytest.fixture
def srv(server: Server) -> Server:
    register(server)
    return server


def exchange(f: Flow, code: str, key: DPoPKey | None) -> Any:
    headers = {"DPoP": key.proof("POST", TOKEN_URL, iat=f.server.clock.now())} if key else {}
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": f.redirect_uri,
        "code_verifier": f.verifier,
        "client_id": f.client_id,
    }
    return f.server.http.post("/token", data=data, headers=headers)


def test_dpop_jkt_code_exchanged_with_a_proof_of_that_key_gives_a_bound_token(
    srv: Server,
) -> None:
    key = DPoPKey.generate()
    f = Flow(srv)
    r = exchange(f, f.code(dpop_jkt=key.jkt), key)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    assert jwt_claims(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def test_dpop_jkt_code_with_a_proof_of_another_key_is_invalid_grant(srv: Server) -> None:
    key, other = DPoPKey.generate(), DPoPKey.generate()
    f = Flow(srv)
    code = f.code(dpop_jkt=key.jkt)
    r = exchange(f, code, other)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert "bound to" in r.json()["error_description"]
    # refused before it was consumed: the client holding the key still exchanges it
    assert exchange(f, code, key).status_code == 200


def test_dpop_jkt_code_without_a_proof_is_invalid_grant(srv: Server) -> None:
    key = DPoPKey.generate()
    f = Flow(srv)
    r = exchange(f, f.code(dpop_jkt=key.jkt), None)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert "DPoP proof" in r.json()["error_description"]


def test_a_code_without_dpop_jkt_may_still_be_bound_at_the_exchange(srv: Server) -> None:
    key = DPoPKey.generate()
    f = Flow(srv)
    r = exchange(f, f.code(), key)
    assert r.status_code == 200 and r.json()["token_type"] == "DPoP"


@pytest.mark.parametrize("jkt", ["short", "x" * 44, "a+b/" + "c" * 39])
def test_malformed_dpop_jkt_is_invalid_request_at_the_redirect_uri(srv: Server, jkt: str) -> None:
    f = Flow(srv)
    r = f.authorize(dpop_jkt=jkt)
    assert r.status_code in (302, 303)
    p = redirect_params(r.headers["location"])
    assert p["error"] == "invalid_request" and "dpop_jkt" in p["error_description"]

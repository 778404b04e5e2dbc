"""Every JWT kind the server signs is explicitly typed and refused where it does not belong
(RFC 8725 §3.11): presented as an access token, each non-``at+jwt`` kind is 401 — even when it
is signed with the access-token key itself and carries valid access-token claims."""

from __future__ import annotations

import pytest

from support.oauth import Flow, register
from support.server import Server, bearer
from tokenward.jws import JWSSigner


def _claims(server: Server) -> dict[str, object]:
    now = int(server.clock.now())
    return {
        "iss": server.runtime.settings.issuer,
        "sub": "alice",
        "aud": server.runtime.settings.audience,
        "exp": now + 300,
        "iat": now,
        "jti": "j1",
        "client_id": "app",
    }


def test_control_an_at_jwt_with_these_claims_is_accepted(server: Server) -> None:
    token = JWSSigner(server.runtime.keyring.active, typ="at+jwt").sign(_claims(server))
    assert server.http.get("/userinfo", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("typ", ["JWT", "logout+jwt", "secevent+jwt"])
def test_other_kinds_signed_with_the_access_token_key_are_401(server: Server, typ: str) -> None:
    token = JWSSigner(server.runtime.keyring.active, typ=typ).sign(_claims(server))
    r = server.http.get("/userinfo", headers=bearer(token))
    assert r.status_code == 401 and "typ" in r.headers["www-authenticate"]


def test_a_real_id_token_is_401_as_an_access_token(server: Server) -> None:
    register(server)
    f = Flow(server)
    idt = f.exchange(f.code()).json()["id_token"]
    assert server.http.get("/userinfo", headers=bearer(idt)).status_code == 401


def test_a_real_logout_token_is_401_as_an_access_token(server: Server) -> None:
    token = server.runtime.id_tokens.logout_token(sub="alice", sid="s1", client_id="app")
    assert server.http.get("/userinfo", headers=bearer(token)).status_code == 401

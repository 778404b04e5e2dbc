"""The device authorization grant (RFC 8628) through the /device pages (in-process app)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from support.authz import open_api
from support.oauth import hidden, jwt_claims
from support.server import ALICE_PW, Server, bearer
from tokenward.server.routes.device import USER_CODE_ALPHABET, normalize_user_code

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def srv(server: Server) -> Server:
    async def go() -> None:
        await server.runtime.clients.create(
            "tv", public=True, grants=(GRANT, "refresh_token"), name="Living-room TV"
        )
        await open_api(
            server.runtime,
            users=["alice"],
            clients=["tv"],
            extra_client_scopes=["openid", "profile"],
        )

    server.run(go)
    return server


def start(srv: Server, scope: str = "openid profile") -> dict[str, Any]:
    r = srv.http.post("/device_authorization", data={"client_id": "tv", "scope": scope})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def poll(srv: Server, device_code: str, client_id: str = "tv") -> Any:
    return srv.http.post(
        "/token", data={"grant_type": GRANT, "device_code": device_code, "client_id": client_id}
    )


def approve(srv: Server, user_code: str, decision: str = "allow") -> Any:
    page = srv.http.get("/device").text
    r = srv.http.post(
        "/device",
        data={
            "request_id": hidden(page, "request_id"),
            "csrf_token": hidden(page, "csrf_token"),
            "user_code": user_code,
            "username": "alice",
            "password": ALICE_PW,
        },
    )
    assert r.status_code == 200 and 'name="decision"' in r.text, r.text
    return srv.http.post(
        "/device/consent",
        data={
            "request_id": hidden(r.text, "request_id"),
            "csrf_token": hidden(r.text, "csrf_token"),
            "decision": decision,
        },
    )


def test_device_authorization_response(srv: Server) -> None:
    body = start(srv)
    issuer = srv.runtime.settings.issuer
    assert body["verification_uri"] == f"{issuer}/device"
    assert re.fullmatch(
        rf"[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}", body["user_code"]
    )
    assert body["verification_uri_complete"] == f"{issuer}/device?user_code={body['user_code']}"
    assert body["interval"] == 5 and body["expires_in"] == 600
    assert len(body["device_code"]) >= 43


def test_device_flow_pending_then_tokens(srv: Server) -> None:
    body = start(srv)
    r = poll(srv, body["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    assert approve(srv, body["user_code"].lower()).status_code == 200  # forgiving input
    srv.clock.advance(5)
    r = poll(srv, body["device_code"])
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["refresh_token"] and jwt_claims(tok["id_token"])["aud"] == "tv"
    assert srv.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 200
    again = poll(srv, body["device_code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_polling_too_fast_is_slow_down_http_400_and_interval_grows(srv: Server) -> None:
    body = start(srv)
    assert poll(srv, body["device_code"]).json()["error"] == "authorization_pending"
    r = poll(srv, body["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "slow_down"
    srv.clock.advance(5)
    assert poll(srv, body["device_code"]).json()["error"] == "slow_down"  # 5 < 10: now 15 s
    srv.clock.advance(15)
    assert poll(srv, body["device_code"]).json()["error"] == "authorization_pending"


def test_denied_device_is_access_denied(srv: Server) -> None:
    body = start(srv)
    approve(srv, body["user_code"], decision="deny")
    r = poll(srv, body["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "access_denied"


def test_expired_device_code_is_expired_token(srv: Server) -> None:
    body = start(srv)
    srv.clock.advance(600)
    r = poll(srv, body["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "expired_token"


def test_device_code_of_another_client_is_invalid_grant(srv: Server) -> None:
    body = start(srv)
    r = poll(srv, body["device_code"], client_id="app")
    assert r.status_code == 400 and r.json()["error"] in ("invalid_grant", "unauthorized_client")


def test_device_form_without_csrf_token_is_refused(srv: Server) -> None:
    body = start(srv)
    page = srv.http.get("/device").text
    r = srv.http.post(
        "/device",
        data={
            "request_id": hidden(page, "request_id"),
            "user_code": body["user_code"],
            "username": "alice",
            "password": ALICE_PW,
        },
    )
    assert r.status_code == 403 and "csrf_token" in r.text


def test_wrong_user_code_is_refused_on_the_page(srv: Server) -> None:
    page = srv.http.get("/device").text
    r = srv.http.post(
        "/device",
        data={
            "request_id": hidden(page, "request_id"),
            "csrf_token": hidden(page, "csrf_token"),
            "user_code": "BCDF-GHJK",
            "username": "alice",
            "password": ALICE_PW,
        },
    )
    assert r.status_code == 400 and "not valid" in r.text


def test_user_code_alphabet_and_normalisation() -> None:
    assert USER_CODE_ALPHABET == "BCDFGHJKLMNPQRSTVWXZ"
    assert normalize_user_code("bcdf-ghjk") == "BCDFGHJK"
    assert normalize_user_code("BCDF GHJK") == "BCDFGHJK"
    assert normalize_user_code("ABCD-EFGH") is None  # vowels are not in the alphabet
    assert normalize_user_code("BCDF-GHJ") is None


def test_client_without_the_device_grant_is_unauthorized(srv: Server) -> None:
    r = srv.http.post("/device_authorization", data={"client_id": "app"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"

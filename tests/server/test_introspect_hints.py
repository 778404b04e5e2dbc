"""RFC 7662 §2.1: ``token_type_hint`` is only a hint — a refresh token is introspected with
``refresh_token``, with no hint and with a wrong hint; an access token likewise."""

from __future__ import annotations

from typing import Any

import pytest

from support.server import Server


def _introspect(server: Server, token: str, hint: str | None) -> dict[str, Any]:
    data = {"token": token}
    if hint is not None:
        data["token_type_hint"] = hint
    r = server.http.post("/introspect", data=data, headers=server.svc())
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("hint", ["refresh_token", None, "access_token", "unknown_type"])
def test_refresh_token_whatever_the_hint(server: Server, hint: str | None) -> None:
    tok = server.login()
    body = _introspect(server, tok["refresh_token"], hint)
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == "alice" and body["client_id"] == "app"
    assert body["exp"] > body["iat"]
    assert "refresh_token" not in body and tok["refresh_token"] not in str(body)


@pytest.mark.parametrize("hint", ["access_token", None, "refresh_token"])
def test_access_token_whatever_the_hint(server: Server, hint: str | None) -> None:
    tok = server.login()
    body = _introspect(server, tok["access_token"], hint)
    assert body["active"] is True and body["token_type"] == "Bearer"


def test_rotated_refresh_token_is_inactive_with_the_hint(server: Server) -> None:
    tok = server.login()
    r = server.refresh(tok["refresh_token"])
    assert r.status_code == 200
    assert _introspect(server, tok["refresh_token"], "refresh_token") == {"active": False}
    assert _introspect(server, r.json()["refresh_token"], "refresh_token")["active"] is True

"""RFC 7009 (revocation) and RFC 7662 (introspection) rules as named HTTP tests."""

from __future__ import annotations

from support.server import Server, basic, bearer


def _revoke(server: Server, token: str, client_id: str = "app", **extra: str) -> object:
    return server.http.post("/revoke", data={"token": token, "client_id": client_id, **extra})


def _introspect(server: Server, token: str) -> object:
    return server.http.post("/introspect", data={"token": token}, headers=server.svc())


def test_rfc7009_2_2_unknown_token_is_200(server: Server) -> None:
    for token in ("twr_" + "A" * 43, "not-a-token", "a.b.c"):
        r = _revoke(server, token)
        assert r.status_code == 200, r.text  # type: ignore[attr-defined]


def test_rfc7009_2_1_token_is_required(server: Server) -> None:
    r = server.http.post("/revoke", data={"client_id": "app"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_rfc7009_2_1_client_must_authenticate(server: Server) -> None:
    r = server.http.post("/revoke", data={"token": "x"}, headers=basic("svc", "bad"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rfc7009_2_1_revoking_refresh_token_revokes_its_access_tokens(server: Server) -> None:
    tok = server.login()
    assert _revoke(server, tok["refresh_token"]).status_code == 200  # type: ignore[attr-defined]
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    r = server.refresh(tok["refresh_token"])
    assert r.json()["error"] == "invalid_grant"


def test_rfc7009_2_1_access_token_revoked_by_jti(server: Server) -> None:
    tok = server.login()
    assert _revoke(server, tok["access_token"]).status_code == 200  # type: ignore[attr-defined]
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    # the session itself lives on: its refresh token still works
    r = server.refresh(tok["refresh_token"])
    assert r.status_code == 200


def test_rfc7009_2_1_wrong_token_type_hint_still_searches_all_types(server: Server) -> None:
    tok = server.login()
    r = _revoke(server, tok["refresh_token"], token_type_hint="access_token")
    assert r.status_code == 200  # type: ignore[attr-defined]
    assert _introspect(server, tok["refresh_token"]).json() == {"active": False}  # type: ignore[attr-defined]


def test_rfc7009_2_1_client_may_not_revoke_another_clients_token(server: Server) -> None:
    tok = server.login()
    r = _revoke(server, tok["refresh_token"], client_id="other")
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"  # type: ignore[attr-defined]
    assert _introspect(server, tok["refresh_token"]).json()["active"] is True  # type: ignore[attr-defined]


def test_rfc7009_2_2_1_store_down_is_503_with_retry_after(server: Server) -> None:
    tok = server.login()
    server.store.set_available(False)
    r = _revoke(server, tok["refresh_token"])
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert r.headers["retry-after"].isdigit()  # type: ignore[attr-defined]
    assert r.json()["error"] == "temporarily_unavailable"  # type: ignore[attr-defined]


def test_rfc7662_2_1_caller_must_authenticate(server: Server) -> None:
    tok = server.login()
    anon = server.http.post("/introspect", data={"token": tok["access_token"]})
    assert anon.status_code == 401
    public = server.http.post(
        "/introspect", data={"token": tok["access_token"], "client_id": "app"}
    )
    assert public.status_code == 401
    bad = server.http.post(
        "/introspect", data={"token": tok["access_token"]}, headers=basic("svc", "nope")
    )
    assert bad.status_code == 401 and "active" not in bad.text


def test_rfc7662_2_2_active_access_token(server: Server) -> None:
    tok = server.login()
    body = _introspect(server, tok["access_token"]).json()  # type: ignore[attr-defined]
    assert body["active"] is True and body["sub"] == "alice" and body["client_id"] == "app"
    assert body["token_type"] == "Bearer" and body["exp"] - body["iat"] == 900


def test_rfc7662_2_2_active_refresh_token(server: Server) -> None:
    tok = server.login()
    body = _introspect(server, tok["refresh_token"]).json()  # type: ignore[attr-defined]
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert body["sub"] == "alice"


def test_rfc7662_2_2_inactive_is_exactly_active_false(server: Server) -> None:
    tok = server.login()
    rotated = server.refresh(tok["refresh_token"]).json()
    cases = ["garbage", "twr_" + "B" * 43, "a.b.c", tok["refresh_token"]]  # consumed parent
    for token in cases:
        r = _introspect(server, token)
        assert r.status_code == 200 and r.json() == {"active": False}, token  # type: ignore[attr-defined]
    server.clock.advance(900 + 31)  # access token expired (beyond the leeway)
    assert _introspect(server, rotated["access_token"]).json() == {"active": False}  # type: ignore[attr-defined]
    _revoke(server, rotated["refresh_token"])
    assert _introspect(server, rotated["refresh_token"]).json() == {"active": False}  # type: ignore[attr-defined]


def test_rfc7662_store_down_is_never_active(server: Server) -> None:
    tok = server.login()
    server.store.set_available(False)
    r = _introspect(server, tok["access_token"])
    assert r.status_code == 503 and '"active":true' not in r.text  # type: ignore[attr-defined]

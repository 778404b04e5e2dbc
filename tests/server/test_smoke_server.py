from __future__ import annotations

from support.server import Server, bearer


def test_password_refresh_revoke_roundtrip(server: Server) -> None:
    tok = server.login()
    assert tok["token_type"] == "Bearer" and tok["refresh_token"].startswith("twr_")
    r = server.http.get("/userinfo", headers=bearer(tok["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["sub"] == "alice"
    r = server.refresh(tok["refresh_token"])
    assert r.status_code == 200, r.text

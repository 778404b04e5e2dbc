"""Self-service password change and the last-admin rule over HTTP."""

from __future__ import annotations

from typing import Any

from support.server import ADMIN_PW, ALICE_PW, Server, bearer
from tokenward.events import add_listener


def _change(server: Server, token: str, current: str, new: str, **headers: str) -> Any:
    return server.http.post(
        "/account/password",
        json={"current_password": current, "new_password": new},
        headers={**bearer(token), **headers},
    )


def test_account_password_change_ends_other_sessions_and_emits_a_security_event(
    server: Server,
) -> None:
    mine = server.login()
    other = server.login()
    server.clock.advance(10)  # the change comes after both sessions began
    events: list[tuple[str, dict[str, Any]]] = []
    remove = add_listener(lambda name, fields: events.append((name, dict(fields))))
    try:
        r = _change(server, mine["access_token"], ALICE_PW, "a fresh passphrase")
    finally:
        remove()
    assert r.status_code == 200, r.text
    assert r.json() == {"other_sessions_revoked": 1}
    # the other session is over, mine goes on
    assert server.refresh(other["refresh_token"]).status_code == 400
    assert server.http.get("/userinfo", headers=bearer(other["access_token"])).status_code == 401
    # mine is re-bound to the new credential version: the watermark spares it
    assert server.refresh(mine["refresh_token"]).status_code == 200, "own session ended"
    assert server.password(password="a fresh passphrase").status_code == 200
    assert server.password().status_code == 400  # the old password is gone
    changed = [f for name, f in events if name == "password_changed"]
    assert changed and changed[0]["sub"] == "alice" and changed[0]["other_sessions_revoked"] == 1


def test_account_password_change_requires_the_current_password_and_the_policy(
    server: Server,
) -> None:
    tok = server.login()["access_token"]
    wrong = _change(server, tok, "not my password", "a fresh passphrase")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    weak = _change(server, tok, ALICE_PW, "password1")
    assert weak.status_code == 400 and "most common" in weak.json()["error_description"]
    short = _change(server, tok, ALICE_PW, "short")
    assert short.status_code == 400 and "at least 8" in short.json()["error_description"]
    anon = server.http.post(
        "/account/password", json={"current_password": ALICE_PW, "new_password": "x" * 12}
    )
    assert anon.status_code == 401


def test_account_password_change_checks_the_csrf_header_in_cookie_mode(
    server_factory: Any,
) -> None:
    server = server_factory(cookie_path="/")
    r = server.http.post(
        "/login", json={"username": "alice", "password": ALICE_PW, "mode": "cookie"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    no_csrf = _change(server, body["access_token"], ALICE_PW, "a fresh passphrase")
    assert no_csrf.status_code == 400 and "X-CSRF-Token" in no_csrf.json()["error_description"]
    ok = _change(server, body["access_token"], ALICE_PW, "a fresh passphrase",
                 **{"X-CSRF-Token": body["csrf_token"]})  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_last_active_admin_cannot_be_disabled_over_the_api(server: Server) -> None:
    admin = server.login(username="root", password=ADMIN_PW, scope="admin")
    auth = bearer(admin["access_token"])
    r = server.http.post("/admin/users/root/disable", headers=auth)
    assert r.status_code == 400
    assert "last active admin" in r.json()["error_description"]
    # with a second admin, one of them may go
    created = server.http.post(
        "/admin/users",
        json={"username": "root2", "password": "second admin pw", "is_admin": True},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert server.http.post("/admin/users/root2/disable", headers=auth).status_code == 200
    assert server.http.post("/admin/users/root/disable", headers=auth).status_code == 400

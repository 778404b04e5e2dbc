"""First-party login (token and browser cookie mode with CSRF), logout, sessions, userinfo
(RFC 6750), admin endpoints and the revocation feed."""

from __future__ import annotations

import threading

from support.server import ADMIN_PW, ALICE_PW, Server, bearer


def _login(server: Server, **kw: str) -> dict[str, str]:
    body = {"username": "alice", "password": ALICE_PW, "client_id": "app", **kw}
    r = server.http.post("/login", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, str] = r.json()
    return out


def _admin(server: Server) -> dict[str, str]:
    return bearer(_login(server, username="root", password=ADMIN_PW, scope="admin")["access_token"])


def test_login_token_mode(server: Server) -> None:
    body = _login(server, device="laptop")
    assert body["refresh_token"].startswith("twr_") and body["session_id"]
    sessions = server.http.get("/sessions", headers=bearer(body["access_token"])).json()
    assert sessions[0]["device"] == "laptop" and sessions[0]["current"] is True


def test_login_bad_password_and_throttle(server: Server) -> None:
    for _ in range(5):
        r = server.http.post(
            "/login", json={"username": "alice", "password": "no", "client_id": "app"}
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = server.http.post(
        "/login", json={"username": "alice", "password": ALICE_PW, "client_id": "app"}
    )
    assert r.status_code == 429 and r.headers["retry-after"]


def test_login_malformed_json_is_invalid_request(server: Server) -> None:
    r = server.http.post("/login", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = server.http.post("/login", json={"username": "alice"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_login_refuses_confidential_client_without_secret(server: Server) -> None:
    r = server.http.post(
        "/login", json={"username": "alice", "password": ALICE_PW, "client_id": "svc"}
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_browser_mode_cookie_attributes(server: Server) -> None:
    r = server.http.post(
        "/login",
        json={"username": "alice", "password": ALICE_PW, "client_id": "app", "mode": "cookie"},
    )
    assert r.status_code == 200
    body = r.json()
    assert "refresh_token" not in body and body["csrf_token"] and body["access_token"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Secure-tokenward_rt=twr_")  # HTTPS, narrow path
    low = cookie.lower()
    for attr in ("httponly", "secure", "samesite=strict", "path=/token"):
        assert attr in low, attr


def test_browser_mode_host_prefix_when_path_is_root(server_factory: object) -> None:
    server = server_factory(cookie_path="/")  # type: ignore[operator]
    r = server.http.post(
        "/login",
        json={"username": "alice", "password": ALICE_PW, "client_id": "app", "mode": "cookie"},
    )
    assert r.headers["set-cookie"].startswith("__Host-tokenward_rt=")


def test_browser_mode_refresh_needs_csrf_header(server: Server) -> None:
    r = server.http.post(
        "/login",
        json={"username": "alice", "password": ALICE_PW, "client_id": "app", "mode": "cookie"},
    )
    csrf = r.json()["csrf_token"]
    old_cookie = server.http.cookies.get("__Secure-tokenward_rt")
    form = {"grant_type": "refresh_token", "client_id": "app"}
    no = server.http.post("/token", data=form)
    assert no.status_code == 400 and "X-CSRF-Token" in no.json()["error_description"]
    wrong = server.http.post("/token", data=form, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 400
    ok = server.http.post("/token", data=form, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    assert "refresh_token" not in ok.json() and ok.json()["csrf_token"] == csrf
    assert server.http.cookies.get("__Secure-tokenward_rt") != old_cookie  # rotated


def test_logout_ends_the_session_and_clears_cookie(server: Server) -> None:
    tok = _login(server)
    r = server.http.post("/logout", headers=bearer(tok["access_token"]))
    assert r.status_code == 200 and r.json() == {"sessions_revoked": 1}
    assert "max-age=0" in r.headers["set-cookie"].lower()
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    again = server.refresh(tok["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


def test_logout_all_ends_every_session(server: Server) -> None:
    a, b = _login(server), _login(server)
    r = server.http.post("/logout-all", headers=bearer(a["access_token"]))
    assert r.json() == {"sessions_revoked": 2}
    for t in (a, b):
        assert server.http.get("/userinfo", headers=bearer(t["access_token"])).status_code == 401


def test_sessions_list_and_delete_own_only(server: Server) -> None:
    a, b = _login(server), _login(server)
    root = _login(server, username="root", password=ADMIN_PW)
    listed = server.http.get("/sessions", headers=bearer(a["access_token"])).json()
    assert {s["session_id"] for s in listed} == {a["session_id"], b["session_id"]}
    assert [s["current"] for s in listed if s["session_id"] == a["session_id"]] == [True]
    foreign = server.http.delete(
        f"/sessions/{root['session_id']}", headers=bearer(a["access_token"])
    )
    assert foreign.status_code == 404
    ok = server.http.delete(f"/sessions/{b['session_id']}", headers=bearer(a["access_token"]))
    assert ok.status_code == 204
    assert server.http.get("/userinfo", headers=bearer(b["access_token"])).status_code == 401
    assert server.http.get("/userinfo", headers=bearer(a["access_token"])).status_code == 200


def test_rfc6750_3_missing_token_has_bare_challenge(server: Server) -> None:
    r = server.http.get("/userinfo")
    assert r.status_code == 401
    # one bare challenge per scheme the server accepts (RFC 6750 §3, RFC 9449 §7.1)
    assert r.headers["www-authenticate"] == (
        'Bearer realm="tokenward", DPoP algs="ES256 EdDSA Ed25519 RS256 PS256"'
    )


def test_rfc6750_3_1_invalid_token_challenge(server: Server) -> None:
    r = server.http.get("/userinfo", headers=bearer("a.b.c"))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_rfc6750_3_1_insufficient_scope_is_403(server: Server) -> None:
    tok = _login(server)
    r = server.http.get("/admin/users", headers=bearer(tok["access_token"]))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert 'scope="admin"' in r.headers["www-authenticate"]


def test_userinfo(server: Server) -> None:
    tok = _login(server)
    body = server.http.get("/userinfo", headers=bearer(tok["access_token"])).json()
    assert body["sub"] == "alice" and body["preferred_username"] == "alice"
    assert body["is_admin"] is False and body["sid"] == tok["session_id"]


def test_admin_disable_user_revokes_sessions_and_blocks_login(server: Server) -> None:
    tok = _login(server)
    admin = _admin(server)
    users = server.http.get("/admin/users", headers=admin).json()
    assert {u["username"] for u in users} >= {"alice", "root"}
    r = server.http.post("/admin/users/alice/disable", headers=admin)
    assert r.status_code == 200 and r.json()["sessions_revoked"] == 1
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    assert server.password().json()["error"] == "invalid_grant"
    assert server.http.post("/admin/users/ghost/disable", headers=admin).status_code == 404


def test_admin_unknown_user_is_404_not_found_and_duplicate_is_409_already_exists(
    server: Server,
) -> None:
    admin = _admin(server)
    ghost = server.http.post("/admin/users/ghost/password", headers=admin, json={})
    assert (ghost.status_code, ghost.json()["error"]) == (404, "not_found")
    assert "ghost" in ghost.json()["error_description"]
    body = {"username": "alice", "password": "another password 1"}
    dup = server.http.post("/admin/users", headers=admin, json=body)
    assert (dup.status_code, dup.json()["error"]) == (409, "already_exists")
    dup = server.http.post(
        "/admin/clients",
        headers=admin,
        json={"client_id": "app", "public": True, "grants": ["password"]},
    )
    assert (dup.status_code, dup.json()["error"]) == (409, "already_exists")


def test_admin_sessions_and_revoke_subject(server: Server) -> None:
    _login(server)
    _login(server)
    admin = _admin(server)
    assert len(server.http.get("/admin/subjects/alice/sessions", headers=admin).json()) == 2
    r = server.http.post("/admin/subjects/alice/revoke", headers=admin)
    assert r.json() == {"sessions_revoked": 2}
    assert server.http.get("/admin/subjects/alice/sessions", headers=admin).json() == []


def test_admin_rotate_keys_publishes_before_signing(server: Server) -> None:
    admin = _admin(server)
    before = {k["kid"]: k["state"] for k in server.http.get("/admin/keys", headers=admin).json()}
    nxt = next(k for k, s in before.items() if s == "next")
    after = server.http.post("/admin/keys/rotate", headers=admin).json()
    states = {k["kid"]: k["state"] for k in after}
    assert states[nxt] == "active"  # the key verifiers already had is the one that signs
    jwks = {k["kid"] for k in server.http.get("/.well-known/jwks.json").json()["keys"]}
    assert set(states) <= jwks  # retired key still published, a new next key too
    assert len(jwks - set(states)) == 1  # and the ID-token key
    # the admin token signed by the retired key still verifies; new tokens use the new key
    assert server.http.get("/admin/keys", headers=admin).status_code == 200
    assert server.http.get("/userinfo", headers=bearer(_login(server)["access_token"])).json()


def test_admin_create_client_shows_secret_once(server: Server) -> None:
    admin = _admin(server)
    r = server.http.post(
        "/admin/clients", headers=admin, json={"client_id": "rs", "grants": ["client_credentials"]}
    )
    assert r.status_code == 201 and r.json()["client_secret"]
    listed = server.http.get("/admin/clients", headers=admin).json()
    assert all(c["client_secret"] is None for c in listed)


def test_feed_snapshot_tail_and_auth(server: Server) -> None:
    tok = _login(server)
    assert server.http.get("/revocations").status_code == 401
    no_scope = server.http.get("/revocations", headers=bearer(tok["access_token"]))
    assert no_scope.status_code == 403
    empty = server.http.get("/revocations", headers=server.svc()).json()
    assert empty["events"] == [] and empty["cursor"] == 0
    server.http.post("/logout", headers=bearer(tok["access_token"]))
    snap = server.http.get("/revocations?after=0", headers=server.svc()).json()
    assert [(e["kind"], e["value"]) for e in snap["events"]] == [("sid", tok["session_id"])]
    tail = server.http.get(f"/revocations?after={snap['cursor']}", headers=server.svc()).json()
    assert tail["events"] == [] and tail["cursor"] == snap["cursor"]
    svc_token = server.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "revocations"},
        headers=server.svc(),
    ).json()["access_token"]
    assert server.http.get("/revocations", headers=bearer(svc_token)).status_code == 200


def test_feed_long_poll_wakes_on_revocation(server: Server) -> None:
    tok = _login(server)
    cursor = server.http.get("/revocations", headers=server.svc()).json()["cursor"]
    result: dict[str, object] = {}

    def poll() -> None:
        r = server.http.get(f"/revocations?after={cursor}&wait=10", headers=server.svc())
        result["body"] = r.json()

    t = threading.Thread(target=poll)
    t.start()
    server.http.post("/logout", headers=bearer(tok["access_token"]))
    t.join(timeout=15)
    body = result["body"]
    assert isinstance(body, dict) and body["events"][0]["value"] == tok["session_id"]


def test_feed_sse_stream(server: Server) -> None:
    tok = _login(server)
    server.http.post("/logout", headers=bearer(tok["access_token"]))
    headers = {**server.svc(), "Accept": "text/event-stream"}
    with server.http.stream("GET", "/revocations", headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        seen = ""
        for line in r.iter_lines():
            seen += line + "\n"
            if line.startswith("data: {"):
                break
    assert "event: ready" in seen and tok["session_id"] in seen and "id: 1" in seen

"""The console's HTTP surface without a browser: the page and assets with a strict CSP, and
the admin endpoints the console needs (reset password, token check, security events, keys)."""

from __future__ import annotations

import re
from importlib.resources import files

from support.console import APP_ALICE_PW, App

ASSETS = sorted(
    p.name for p in files("tokenward").joinpath("console").iterdir() if p.name != "index.html"
)


def test_console_page_has_a_strict_csp_and_no_inline_code(app: App) -> None:
    r = app.http.get("/console")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = {d.split(" ", 1)[0]: d for d in r.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == "default-src 'self'"
    assert csp["script-src"] == "script-src 'self'"
    assert csp["style-src"] == "style-src 'self'"
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["object-src"] == "object-src 'none'"
    assert "require-trusted-types-for" in csp
    assert "unsafe" not in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script
    assert "<style" not in html and " style=" not in html  # no inline style
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert "http://" not in html and "https://" not in html  # no CDN
    assert not re.search(r"eyJ[\w-]+\.[\w-]+|twr_\w", html)  # no tokens inline
    assert app.http.get("/console/").status_code == 200


def test_every_asset_is_served_with_the_policy(app: App) -> None:
    html = app.http.get("/console").text
    referenced = set(re.findall(r'(?:src|href)="/console/static/([^"]+)"', html))
    assert referenced and referenced <= set(ASSETS)
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in ASSETS:
        r = app.http.get(f"/console/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(types[name[name.rfind(".") :]])
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        again = app.http.get(
            f"/console/static/{name}", headers={"If-None-Match": r.headers["etag"]}
        )
        assert again.status_code == 304


def test_unknown_or_traversing_asset_paths_are_404(app: App) -> None:
    for path in (
        "/console/static/nope.js",
        "/console/static/index.html",
        "/console/static/..%2Fserver%2Fapp.py",
        "/console/static/.hidden.js",
        "/console/static/app.py",
    ):
        assert app.http.get(path).status_code == 404, path


def test_scripts_keep_tokens_out_of_storage_and_html_sinks(app: App) -> None:
    for name in ASSETS:
        if not name.endswith(".js"):
            continue
        js = app.http.get(f"/console/static/{name}").text
        js = re.sub(r"/\*.*?\*/|^\s*//.*$", "", js, flags=re.S | re.M)  # code, not comments
        assert "localStorage" not in js, name
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|eval\(", js), name
        assert not re.search(r"sessionStorage\.setItem\([^)]*token", js, re.I), name


def test_console_is_not_in_the_openapi_schema(app: App) -> None:
    paths = app.http.get("/openapi.json").json()["paths"]
    assert not any(p.startswith("/console") for p in paths)
    assert "/admin/tokens/verify" in paths and "/admin/users/{username}/password" in paths


def test_reset_password_generates_one_shown_once_and_ends_sessions(app: App) -> None:
    session = app.login("alice", APP_ALICE_PW)
    h = app.admin_headers()
    r = app.http.post("/admin/users/alice/password", json={}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["sessions_revoked"] == 1 and len(body["password"]) >= 12
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    assert app.http.get("/userinfo", headers=auth).status_code == 401
    assert (
        app.http.post("/login", json={"username": "alice", "password": APP_ALICE_PW}).status_code
        == 400
    )
    app.login("alice", body["password"])

    r = app.http.post("/admin/users/alice/password", json={"password": "chosen-pass-1"}, headers=h)
    assert r.status_code == 200 and r.json()["password"] is None
    app.login("alice", "chosen-pass-1")
    assert app.http.post("/admin/users/ghost/password", json={}, headers=h).status_code == 404
    short = app.http.post("/admin/users/alice/password", json={"password": "short"}, headers=h)
    assert short.status_code == 400
    user = {"Authorization": f"Bearer {app.login('alice', 'chosen-pass-1')['access_token']}"}
    assert app.http.post("/admin/users/alice/password", json={}, headers=user).status_code == 403


def _check(app: App, token: str) -> dict[str, object]:
    r = app.http.post("/admin/tokens/verify", json={"token": token}, headers=app.admin_headers())
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    out: dict[str, object] = r.json()
    return out


def test_token_check_reports_signature_expiry_and_revocation(app: App) -> None:
    s = app.login("alice", APP_ALICE_PW)
    at, rt = s["access_token"], s["refresh_token"]
    live = _check(app, at)
    assert live["kind"] == "access_token" and live["active"] is True
    assert live["signature"] == "valid" and live["revoked"] is False
    assert live["kid"] == app.runtime.keyring.active.kid

    tampered = _check(app, at[:-4] + ("AAAA" if not at.endswith("AAAA") else "BBBB"))
    assert tampered["signature"] == "invalid" and tampered["active"] is False
    assert tampered["error"] == "invalid_token"

    refresh = _check(app, rt)
    assert refresh["kind"] == "refresh_token" and refresh["active"] is True
    assert refresh["session"]["session_id"] == s["session_id"]  # type: ignore[index]

    assert app.http.post("/logout", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    revoked = _check(app, at)
    assert revoked["active"] is False and revoked["revoked"] is True
    assert revoked["revocation"] == "session revoked"
    assert _check(app, rt)["active"] is False

    other = app.login("alice", APP_ALICE_PW)["access_token"]
    app.clock.advance(3600)
    expired = _check(app, other)
    assert expired["signature"] == "valid" and expired["active"] is False
    assert expired["revoked"] is False and "expired" in str(expired["error_description"])

    junk = _check(app, "not a token")
    assert junk["kind"] == "unknown" and junk["active"] is False


def test_token_check_needs_admin_scope(app: App) -> None:
    user = app.login("alice", APP_ALICE_PW)["access_token"]
    r = app.http.post(
        "/admin/tokens/verify", json={"token": user}, headers={"Authorization": f"Bearer {user}"}
    )
    assert r.status_code == 403


def test_keys_show_the_next_rotation_of_the_active_key(app: App) -> None:
    keys = app.http.get("/admin/keys", headers=app.admin_headers()).json()
    period = app.runtime.settings.key_rotation_days * 86400
    for k in keys:
        if k["state"] == "active":
            assert k["next_rotation_at"] == (k["activated_at"] or k["created_at"]) + period
        else:
            assert k["next_rotation_at"] is None
    assert {k["state"] for k in keys} >= {"active", "next"}


def test_security_events_backlog_has_reuse_detection(app: App) -> None:
    s = app.login("alice", APP_ALICE_PW)
    form = {"grant_type": "refresh_token", "client_id": "tokenward-console"}
    assert (
        app.http.post("/token", data={**form, "refresh_token": s["refresh_token"]}).status_code
        == 200
    )
    assert (
        app.http.post("/token", data={**form, "refresh_token": s["refresh_token"]}).status_code
        == 400
    )
    h = app.admin_headers()
    events = app.http.get("/admin/events", headers=h).json()["events"]
    names = [
        e["event"] for e in events if e.get("sub") == "alice" or e.get("value") == s["session_id"]
    ]
    assert names[:3] == ["issued", "refreshed", "refresh_token_reuse"]
    reuse = next(e for e in events if e["event"] == "refresh_token_reuse")
    assert reuse["sid"] == s["session_id"] and reuse["at"] == app.clock.now()
    assert all("twr_" not in str(v) and "eyJ" not in str(v) for e in events for v in e.values())
    later = app.http.get(f"/admin/events?after={reuse['id']}", headers=h).json()["events"]
    assert all(e["id"] > reuse["id"] for e in later)
    user = {"Authorization": f"Bearer {app.login('alice', APP_ALICE_PW)['access_token']}"}
    assert app.http.get("/admin/events", headers=user).status_code == 403

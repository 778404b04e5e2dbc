"""The console in headless Chromium against a real ``tokenward serve`` (SQLite):
sign in, my sessions (two clients), revoke the other one, silent refresh, log out
everywhere, admin (users, keys rotation, live reuse detection), token inspector."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from support.console import ADMIN_PW, LiveServer, shot, sign_in

pytestmark = pytest.mark.slow

SECOND_UA = "tokenward-test-cli/1.0 (second device)"


def _claims(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    return out


def _second_client_session(live: LiveServer, username: str, password: str) -> dict[str, Any]:
    """A session of ``username`` started by another client through ``POST /token``."""
    with live.http() as c:
        issuer = c.get("/.well-known/oauth-authorization-server").json()["issuer"]
    r = live.admin(
        "POST",
        "/admin/clients",
        json={
            "client_id": "cli-app",
            "public": True,
            "grants": ["password", "refresh_token"],
            "resources": [issuer],  # this server: the user's own sessions
            "scopes": ["openid", "profile"],
        },
    )
    assert r.status_code in (201, 409), r.text  # 409: registered by an earlier test
    with live.http() as c:
        r = c.post(
            "/token",
            data={
                "grant_type": "password",
                "client_id": "cli-app",
                "username": username,
                "password": password,
            },
            headers={"User-Agent": SECOND_UA},
        )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _userinfo(live: LiveServer, token: str) -> int:
    with live.http() as c:
        return c.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code


def _status(page: Any, pattern: str) -> str:
    page.wait_for_selector(f"#status:not([hidden]) >> text=/{pattern}/")
    text: str = page.inner_text("#status")
    return text


def test_sign_in_sessions_revoke_other_and_log_out_everywhere(page: Any, live: LiveServer) -> None:
    live.add_user("carol", "carol-password-1")
    other = _second_client_session(live, "carol", "carol-password-1")
    other_sid = _claims(other["access_token"])["sid"]
    assert _userinfo(live, other["access_token"]) == 200

    page.goto("/console")
    page.wait_for_selector("#view-signin:not([hidden])")
    page.fill("#signin-username", "carol")
    page.fill("#signin-password", "wrong password")
    page.click("#signin-submit")
    assert "invalid username or password" in _status(page, "invalid")
    page.fill("#signin-username", "")
    shot(page, "signin")

    sign_in(page, "carol", "carol-password-1")
    rows = page.locator("#sessions-table tbody tr")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    current = page.locator("#sessions-table tbody tr.current")
    assert current.count() == 1
    assert "this session" in current.inner_text()
    other_row = page.locator("#sessions-table tbody tr:not(.current)")
    assert "tokenward-test-cli/1.0" in other_row.inner_text()
    assert "cli-app" in other_row.inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", other_row.inner_text())  # created, last used
    shot(page, "sessions")

    page.click(f"button[data-sid='{other_sid}']")
    assert "Session revoked" in _status(page, "Session revoked")
    page.wait_for_function("document.querySelectorAll('#sessions-table tbody tr').length === 1")
    assert _userinfo(live, other["access_token"]) == 401  # its access token is rejected now

    # The access token is in memory only; a reload refreshes silently (cookie + CSRF header).
    storage = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert "eyJ" not in storage and "twr_" not in storage
    assert "tokenward_rt" not in page.evaluate("document.cookie")  # HttpOnly
    with page.expect_response(lambda r: r.url.endswith("/token")) as refreshed:
        page.reload()
    resp = refreshed.value
    assert resp.status == 200
    assert resp.request.headers.get("x-csrf-token")
    assert "refresh_token" not in resp.json()
    page.wait_for_selector("#who-name:text-is('carol')")
    page.locator("#sessions-table tbody tr").first.wait_for()

    page.click("#logout-all")
    page.click("#logout-all")  # the second click confirms
    assert "Logged out everywhere: 1 session(s) ended" in _status(page, "Logged out everywhere")
    page.wait_for_selector("#view-signin:not([hidden])")
    assert live.admin("GET", "/admin/subjects/carol/sessions").json() == []
    assert page.errors == []


def test_silent_refresh_before_expiry(page: Any, live: LiveServer) -> None:
    live.add_user("gina", "gina-password-1")
    page.clock.install()
    sign_in(page, "gina", "gina-password-1")
    page.clock.run_for(1000)
    assert page.inner_text("#who-exp").startswith("token in 14m")
    with page.expect_response(lambda r: r.url.endswith("/token")) as refreshed:
        page.clock.run_for("14:00")  # 900 s tokens refresh 60 s (at most 20 %) before expiry
    resp = refreshed.value
    assert resp.status == 200, resp.text()
    assert resp.request.headers.get("x-csrf-token")
    assert resp.request.headers.get("authorization") is None  # the cookie authenticates
    # The response arrives before the page has read its body and taken the new token; the
    # header's countdown is redrawn once a second, so step the clock until it shows the new one.
    shown = ""
    for _ in range(50):
        page.clock.run_for(1000)
        shown = page.inner_text("#who-exp")
        if shown.startswith("token in 14m"):
            break
        page.wait_for_timeout(100)
    assert shown.startswith("token in 14m"), shown  # a fresh 15-minute token
    assert page.inner_text("#who-name") == "gina"
    # the page uses the new token
    with page.expect_response(lambda r: r.url.endswith("/sessions")) as listed:
        page.click("#sessions-reload")
    assert listed.value.status == 200
    assert page.errors == []


def test_admin_users_keys_rotation_and_live_reuse(page: Any, live: LiveServer) -> None:
    sign_in(page, "admin", ADMIN_PW, admin=True)
    page.click(".tabs a[data-view='admin']")
    page.wait_for_selector("#events-state.on")
    active = page.locator("#keys-table tbody tr.key-active code.kid")
    old_kid = active.inner_text()

    page.click("#keys-rotate")
    page.click("#keys-rotate")
    assert "Keys rotated" in _status(page, "Keys rotated")
    page.wait_for_function(
        "k => document.querySelector('#keys-table tr.key-active code.kid').textContent !== k",
        arg=old_kid,
    )
    new_kid = active.inner_text()
    assert new_kid != old_kid
    assert f"now signing with {new_kid}" in page.inner_text("#status")
    with live.http() as c:
        kids = {k["kid"] for k in c.get("/.well-known/jwks.json").json()["keys"]}
    assert {old_kid, new_kid} <= kids  # the old key stays published while its tokens live
    assert page.locator("#keys-table tbody tr.key-retired").count() >= 1

    # users: add, reset password, disable
    page.fill("#user-add-form input[name=username]", "dave")
    page.fill("#user-add-form input[name=password]", "dave-password-1")
    page.click("#user-add-form button")
    assert "User dave added." in _status(page, "User dave added")
    page.click("#users-table button[data-user=dave]:text('Reset password')")
    page.wait_for_selector("#users-secret:not([hidden])")
    new_pw = page.inner_text("#users-secret code.secret")
    assert len(new_pw) >= 12
    live.login("dave", new_pw)  # the shown password works
    page.click("#users-table button[data-user=dave]:text('Disable')")
    assert "dave disabled" in _status(page, "dave disabled")
    with live.http() as c:
        assert c.post("/login", json={"username": "dave", "password": new_pw}).status_code == 400

    # a refresh-token reuse elsewhere shows up live, highlighted
    live.add_user("erin", "erin-password-1")
    first = live.login("erin", "erin-password-1")
    with live.http() as c:
        form = {"grant_type": "refresh_token", "client_id": "tokenward-console"}
        ok = c.post("/token", data={**form, "refresh_token": first["refresh_token"]})
        assert ok.status_code == 200, ok.text
        again = c.post("/token", data={**form, "refresh_token": first["refresh_token"]})
        assert again.status_code == 400
    # erin's event, whatever other tests' reuse events the backlog already shows
    reuse = page.locator("#events-list li.event-reuse", has_text="sub=erin")
    reuse.first.wait_for()
    assert "REUSE" in reuse.first.inner_text()

    # a subject's sessions
    page.fill("#subject-input", "erin")
    page.click("#subject-form button[type=submit]")
    assert "erin: 0 live session(s)" in _status(page, "erin:")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "admin", full_page=True)
    assert page.errors == []


def test_admin_access_resources_roles_user_roles_and_client_permissions(
    page: Any, live: LiveServer
) -> None:
    sign_in(page, "admin", ADMIN_PW, admin=True)
    page.click(".tabs a[data-view='admin']")
    page.wait_for_selector("#resources-table tbody tr")
    assert "this server" in page.inner_text("#resources-table")
    page.fill("#resource-add-form input[name=identifier]", "https://orders.example.com")
    page.fill("#resource-add-form input[name=name]", "Orders")
    page.fill("#resource-add-form input[name=scopes]", "orders:read orders:write")
    page.fill("#resource-add-form input[name=default_scopes]", "orders:read")
    page.click("#resource-add-form button")
    assert "added" in _status(page, "Resource https://orders.example.com added")
    page.fill("#role-add-form input[name=name]", "clerk")
    page.fill("#role-add-form input[name=scopes]", "orders:read orders:write")
    page.click("#role-add-form button")
    assert "Role clerk added" in _status(page, "Role clerk added")
    live.add_user("kim", "kim-password-1")
    page.fill("#user-roles-form input[name=username]", "kim")
    page.fill("#user-roles-form input[name=roles]", "clerk")
    page.click("#user-roles-form button")
    assert "kim: roles clerk" in _status(page, "kim: roles clerk")
    page.fill("#client-perms-form input[name=client_id]", "tokenward-console")
    page.fill("#client-perms-form input[name=scopes]", "nope")
    page.click("#client-perms-form button")
    assert "no resource defines" in _status(page, "no resource defines")
    assert "clerk" in page.inner_text("#roles-table")
    assert "orders:read orders:write" in page.inner_text("#resources-table")


def test_inspector_shows_claims_signature_and_revoked(page: Any, live: LiveServer) -> None:
    live.add_user("frank", "frank-password-1")
    token = live.login("frank", "frank-password-1")["access_token"]
    with live.http() as c:
        r = c.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    sign_in(page, "admin", ADMIN_PW, admin=True)
    page.click(".tabs a[data-view='inspector']")
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.fill("#inspector-input", token)
    claims = page.locator("#inspector-claims")
    claims.locator("th:text-is('sub')").wait_for()
    assert "frank" in claims.inner_text()
    assert _claims(token)["jti"] in claims.inner_text()
    page.wait_for_selector("#inspector-signature.ok")
    assert page.inner_text("#inspector-signature").startswith("valid — ES256")
    assert re.search(r"expires in \d+m", page.inner_text("#inspector-countdown"))
    # only the public JWKS was fetched so far: the token has not left the page
    assert all("/admin/tokens/verify" not in u for u in requests)
    page.click("#inspector-server")
    page.wait_for_selector("#inspector-status.revoked")
    assert page.inner_text("#inspector-status") == "revoked — session revoked"
    assert sum("/admin/tokens/verify" in u for u in requests) == 1
    shot(page, "inspector", full_page=True)

    page.fill("#inspector-input", token[:-6] + ("AAAAAA" if token[-6:] != "AAAAAA" else "BBBBBB"))
    page.wait_for_selector("#inspector-signature.bad")
    assert page.errors == []


def test_narrow_screen(browser: Any, live: LiveServer) -> None:
    live.add_user("hana", "hana-password-1")
    _second_client_session(live, "hana", "hana-password-1")
    ctx = browser.new_context(
        base_url=live.base, viewport={"width": 390, "height": 844}, device_scale_factor=2
    )
    try:
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, "hana", "hana-password-1")
        page.locator("#sessions-table tbody tr").nth(1).wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "mobile")
    finally:
        ctx.close()


def test_security_event_stream_over_sse(live: LiveServer) -> None:
    """``GET /admin/events`` as Server-Sent Events from the real server: ready, the backlog,
    then a reuse detection that happens while the stream is open."""
    live.add_user("ivan", "ivan-password-1")
    headers = {"Authorization": f"Bearer {live.admin_token()}", "Accept": "text/event-stream"}
    s = live.login("ivan", "ivan-password-1")
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(base_url=live.base, timeout=10) as c,
        c.stream("GET", "/admin/events", headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "event: ready"
        form = {"grant_type": "refresh_token", "client_id": "tokenward-console"}
        with live.http() as other:
            for status in (200, 400):  # rotate, then present the consumed token again
                got = other.post("/token", data={**form, "refresh_token": s["refresh_token"]})
                assert got.status_code == status, got.text
        for line in lines:
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                if events[-1].get("event") == "refresh_token_reuse" and events[-1]["sub"] == "ivan":
                    break
    mine = [e.get("event") for e in events if e.get("sub") == "ivan"]
    assert mine == ["issued", "refreshed", "refresh_token_reuse"]


def test_the_browser_enforces_the_policy(page: Any, live: LiveServer) -> None:
    """The CSP really holds in Chromium: HTML sinks throw (Trusted Types) and an injected
    inline script does not run (and is reported, which the other tests' error check relies on)."""
    page.goto("/console")
    page.wait_for_selector("body[data-ready='1']")
    sink = page.evaluate(
        "() => { try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>'); return 'ran'; }"
        " catch (e) { return e.name; } }"
    )
    assert sink == "TypeError"
    script = page.evaluate(
        "() => { const s = document.createElement('script');"
        " try { s.textContent = 'window.pwned = 1'; } catch (e) { return e.name; }"
        " document.body.append(s); return 'ran'; }"
    )
    assert script == "TypeError" and page.evaluate("window.pwned") is None
    assert any("TrustedHTML" in e for e in page.errors)  # blocked sinks are reported
    page.errors.clear()
    with page.expect_console_message(lambda m: m.type == "error") as refused:
        page.evaluate(
            "() => { const s = document.createElement('style');"
            " s.textContent = 'body { display: none }'; document.head.append(s); }"
        )
    assert "Content Security Policy" in refused.value.text  # refused and reported
    assert any("Content Security Policy" in e for e in page.errors)  # the other tests' check
    assert page.is_visible("#view-signin")  # the inline style was not applied

"""Headless Debian Chromium (Playwright) through the real pages of a ``tokenward serve``:
sign in, consent, redirect back; ``prompt=none`` with and without a sign-in session; the device
flow. The browser really keeps the ``__Host-tokenward-signin`` cookie (``localhost`` is a secure
context) and really enforces the pages' CSP (``form-action`` on the redirect after a form)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from support.console import CHROMIUM, CHROMIUM_ARGS
from support.env import service_missing
from support.oauth_live import ALICE_PW, SPA, Live, start


def _callback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CALLBACK_PORT = _callback_port()
REDIRECT = f"http://127.0.0.1:{CALLBACK_PORT}/cb"  # loopback: any port (RFC 8252 §7.3)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from start("sqlite", tmp_path_factory.mktemp("oauth-browser"))


@pytest.fixture(scope="module")
def callback() -> Iterator[None]:
    """The app's redirect URI: a real loopback listener, as a native app would run."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"app callback")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", CALLBACK_PORT), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, live: Live, callback: None) -> Iterator[Any]:
    ctx = browser.new_context(base_url=live.base)
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    try:
        yield pg
    finally:
        ctx.close()


def _authorize_url(live: Live, **extra: str) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": SPA,
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{live.base}/authorize?{urlencode(params)}", verifier


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_sign_in_consent_and_redirect_back_in_chromium(page: Any, live: Live) -> None:
    url, verifier = _authorize_url(live)
    page.goto(url)
    page.fill('input[name="username"]', "alice")
    page.fill('input[name="password"]', ALICE_PW)
    page.click('button[type="submit"]')
    page.wait_for_selector('button[name="decision"][value="allow"]')
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_url(REDIRECT + "?*")
    q = _query(page.url)
    assert q["state"] == "st-1" and q["iss"] == live.base and q["code"]
    cookies = {c["name"]: c for c in page.context.cookies()}
    signin = cookies["__Host-tokenward-signin"]
    assert signin["httpOnly"] and signin["secure"] and signin["sameSite"] == "Lax"
    tok = httpx.post(
        f"{live.base}/token",
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": SPA,
        },
    )
    assert tok.status_code == 200 and tok.json()["id_token"]
    assert not [e for e in page.errors if "Content Security Policy" in e]
    # prompt=none with the sign-in session (and consent remembered): straight back with a code
    url2, _ = _authorize_url(live, prompt="none")
    page.goto(url2)
    page.wait_for_url(REDIRECT + "?*")
    assert "code" in _query(page.url)


def test_prompt_none_without_a_sign_in_session_is_login_required(page: Any, live: Live) -> None:
    url, _ = _authorize_url(live, prompt="none")
    page.goto(url)
    page.wait_for_url(REDIRECT + "?*")
    assert _query(page.url)["error"] == "login_required"


def test_consent_denied_in_chromium(page: Any, live: Live) -> None:
    url, _ = _authorize_url(live, prompt="consent")
    page.goto(url)
    page.fill('input[name="username"]', "alice")
    page.fill('input[name="password"]', ALICE_PW)
    page.click('button[type="submit"]')
    page.click('button[name="decision"][value="deny"]')
    page.wait_for_url(REDIRECT + "?*")
    assert _query(page.url)["error"] == "access_denied"


def test_device_flow_in_chromium(page: Any, live: Live) -> None:
    r = live.admin(
        "POST",
        "/admin/clients",
        json={
            "client_id": "tv",
            "public": True,
            "grants": [DEVICE_GRANT, "refresh_token"],
            "resources": [live.base],
            "scopes": ["openid", "profile"],
        },
    )
    assert r.status_code == 201, r.text
    start_ = httpx.post(f"{live.base}/device_authorization", data={"client_id": "tv"}).json()
    poll = {"grant_type": DEVICE_GRANT, "device_code": start_["device_code"], "client_id": "tv"}
    pending = httpx.post(f"{live.base}/token", data=poll)
    assert pending.json()["error"] == "authorization_pending"
    page.goto(start_["verification_uri_complete"])
    assert page.input_value('input[name="user_code"]') == start_["user_code"]
    page.fill('input[name="username"]', "alice")
    page.fill('input[name="password"]', ALICE_PW)
    page.click('button[type="submit"]')
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("text=Device connected")
    tok = httpx.post(f"{live.base}/token", data=poll)
    if tok.json().get("error") == "slow_down":  # the poll above was under 5 s ago
        time.sleep(start_["interval"] + 5)  # RFC 8628: wait the (grown) interval
        tok = httpx.post(f"{live.base}/token", data=poll)
    assert tok.status_code == 200, tok.text
    assert tok.json()["access_token"]

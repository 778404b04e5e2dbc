"""The interactive sign-ins of ``tokenward.client`` against tokenward's own ``/authorize``
and device flow: the "user" is headless Chromium filling the server's sign-in and consent
pages; the client is the library as a CLI would use it.
The same flows are also tested against a stub in ``test_manager.py``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tokenward.client import DeviceCode, TokenManager

from .conftest import USER, USER_PW, Live

pytestmark = pytest.mark.slow

CLIENT = "interactive-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def cli_client(live: Live) -> str:
    r = live.admin(
        "POST",
        "/admin/clients",
        json={
            "client_id": CLIENT,
            "public": True,
            "grants": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "redirect_uris": ["http://127.0.0.1/callback"],  # loopback: any port (RFC 8252)
            # the authorization model: what it may ask for (the server's own OIDC scopes)
            "resources": [live.base],
            "scopes": ["openid", "profile"],
        },
    )
    assert r.status_code == 201, r.text
    return CLIENT


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        ctx.close()


def _claims(jwt: str) -> dict[str, Any]:
    seg = jwt.split(".")[1]
    out: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    return out


def _sign_in_and_allow(page: Any) -> None:
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", USER_PW)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    allow = page.locator("button[value=allow]")
    if allow.count():  # the consent page (not first-party)
        allow.click()
        page.wait_for_load_state()


def test_login_authorization_code_with_pkce_and_a_loopback_redirect(
    live: Live, cli_client: str, page: Any
) -> None:
    tm = TokenManager(live.base, cli_client)

    def open_browser(url: str) -> None:
        page.goto(url)
        _sign_in_and_allow(page)

    tm.login_authorization_code(open_browser=open_browser, timeout=30)
    r = httpx.get(f"{live.base}/userinfo", auth=tm.httpx_auth())
    assert r.status_code == 200 and r.json()["sub"] == USER
    assert _claims(tm.access_token())["client_id"] == cli_client
    assert "Signed in" in page.inner_text("body")  # the loopback page the browser ends on
    tm.logout()


def test_login_device_shows_the_code_and_gets_tokens_once_approved(
    live: Live, cli_client: str, page: Any
) -> None:
    tm = TokenManager(live.base, cli_client)
    shown: list[DeviceCode] = []

    def on_code(code: DeviceCode) -> None:  # the user, on another device
        shown.append(code)
        page.goto(code.verification_uri)
        page.fill("input[name=user_code]", code.user_code)
        _sign_in_and_allow(page)

    tm.login_device(on_code=on_code, timeout=60)
    assert len(shown) == 1 and shown[0].verification_uri.startswith(live.base)
    r = httpx.get(f"{live.base}/userinfo", auth=tm.httpx_auth())
    assert r.status_code == 200 and r.json()["sub"] == USER
    tm.logout()

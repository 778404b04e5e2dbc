"""The browser SDK's authorization-code mode (PKCE S256) for an SPA on another origin, against
an in-test stub authorization server (Playwright routes speaking the standard protocol:
``/authorize`` redirects back with a code, ``/token`` checks the PKCE verifier and rotates
refresh tokens, refusing a reused one). Two tabs of the SPA: the second takes the session from
the first, and across three expiries of 2-second tokens the stub sees exactly three refreshes
and no reused refresh token (the rotated refresh token is handed to the other tab too).

The stub stands in for tokenward's own ``/authorize`` (built in parallel); the SDK needs only
the standard protocol.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from .conftest import Live

pytestmark = pytest.mark.slow

SPA = "http://localhost:5173"  # both loopback origins are secure contexts (crypto.subtle)
AS = "http://127.0.0.1:5174"

APP = """<!doctype html><meta charset=utf-8><title>spa</title>
<script type="module">
  import { createClient } from '%(sdk)s';
  const auth = createClient({
    issuer: '%(as)s', clientId: 'spa', mode: 'code', name: 'spa',
    authorizationEndpoint: '%(as)s/authorize', redirectUri: '%(spa)s/app.html',
  });
  window.auth = auth;
  try { await auth.handleRedirect(); if (!auth.signedIn) await auth.restore(); }
  catch (err) { window.failure = String(err); }
  window.ready = true;
</script>"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class StubAS:
    def __init__(self) -> None:
        self.pending: dict[str, dict[str, str]] = {}
        self.current_rt: str | None = None
        self.refreshes = 0
        self.refreshed_by: list[Any] = []  # the page that sent each refresh
        self.reused = 0
        self.exchanges = 0
        self.n = 0

    def _tokens(self) -> dict[str, Any]:
        self.n += 1
        claims = {"sub": "alice", "client_id": "spa", "jti": f"j{self.n}", "exp": time.time() + 2}
        at = ".".join([_b64(b'{"alg":"ES256"}'), _b64(json.dumps(claims).encode()), _b64(b"s")])
        self.current_rt = f"rt-{self.n}-{secrets.token_hex(4)}"
        return {
            "access_token": at,
            "token_type": "Bearer",
            "expires_in": 2,
            "refresh_token": self.current_rt,
        }

    def handle(self, route: Any) -> None:
        req = route.request
        url = urlsplit(req.url)
        cors = {"Access-Control-Allow-Origin": SPA, "Cache-Control": "no-store"}
        if url.path == "/authorize":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            assert q["code_challenge_method"] == "S256" and q["response_type"] == "code"
            code = secrets.token_urlsafe(8)
            self.pending[code] = q
            back = f"{q['redirect_uri']}?" + urlencode({"code": code, "state": q["state"]})
            # the user approves; a page navigates back (a fulfilled 302 is not followed
            # through the routes)
            page = f"<!doctype html><script>location.replace({json.dumps(back)})</script>"
            route.fulfill(status=200, content_type="text/html", body=page)
            return
        if url.path == "/token":
            form = {k: v[0] for k, v in parse_qs(req.post_data or "").items()}
            if form.get("grant_type") == "authorization_code":
                q = self.pending.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                ok = (
                    q is not None
                    and form.get("redirect_uri") == q["redirect_uri"]
                    and _b64(hashlib.sha256(verifier.encode()).digest()) == q["code_challenge"]
                )
                if not ok:
                    route.fulfill(status=400, headers=cors, json={"error": "invalid_grant"})
                    return
                self.exchanges += 1
                route.fulfill(status=200, headers=cors, json=self._tokens())
                return
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") != self.current_rt:
                    self.reused += 1
                    route.fulfill(status=400, headers=cors, json={"error": "invalid_grant"})
                    return
                self.refreshes += 1
                self.refreshed_by.append(req.frame.page)
                route.fulfill(status=200, headers=cors, json=self._tokens())
                return
        route.fulfill(status=404, headers=cors, body="")


@pytest.fixture
def spa(browser: Any, live: Live) -> Iterator[tuple[Any, StubAS]]:
    stub = StubAS()
    app = APP % {"sdk": "/sdk/tokenward.js", "as": AS, "spa": SPA}
    served = httpx.get(f"{live.base}/sdk/tokenward.js")  # the module as the server serves it
    assert served.status_code == 200

    def spa_files(route: Any) -> None:
        if urlsplit(route.request.url).path == "/sdk/tokenward.js":
            route.fulfill(status=200, headers=dict(served.headers), body=served.content)
        else:
            route.fulfill(status=200, content_type="text/html", body=app)

    ctx = browser.new_context()
    ctx.route(f"{AS}/**", stub.handle)
    ctx.route(f"{SPA}/**", spa_files)
    try:
        yield ctx, stub
    finally:
        ctx.close()


def _ready(page: Any) -> None:
    page.wait_for_function("window.ready === true")
    assert page.evaluate("window.failure || null") is None


def test_spa_signs_in_with_pkce_and_two_tabs_refresh_once_per_expiry(
    spa: tuple[Any, StubAS],
) -> None:
    ctx, stub = spa
    first = ctx.new_page()
    errors: list[str] = []
    first.on("pageerror", lambda e: errors.append(str(e)))
    first.set_default_timeout(15_000)
    first.goto(f"{SPA}/app.html")
    _ready(first)
    with first.expect_navigation(url=f"{SPA}/app.html?*"):
        first.evaluate("() => { window.auth.loginWithRedirect(); }")
    _ready(first)
    assert first.evaluate("window.auth.signedIn") is True
    assert first.url == f"{SPA}/app.html"  # the code left the address bar
    assert stub.exchanges == 1
    second = ctx.new_page()
    second.set_default_timeout(15_000)
    second.goto(f"{SPA}/app.html")
    _ready(second)
    assert second.evaluate("window.auth.signedIn") is True
    # handed over, not refreshed (the first tab's own timer may have refreshed meanwhile: the
    # tokens live 2 s, and a page load on a busy machine can take longer)
    assert second not in stub.refreshed_by
    deadline = time.monotonic() + 60
    while stub.refreshes < 3 and time.monotonic() < deadline:
        for p in (first, second):
            p.evaluate("() => window.auth.accessToken()")
        first.wait_for_timeout(100)
    for _ in range(50):  # both tabs hold the current token (read between two refreshes)
        jtis = {p.evaluate("window.auth.claims.jti") for p in (first, second)}
        if len(jtis) == 1:
            break
        first.wait_for_timeout(50)
    print(
        f"\nSPA code mode, 2 tabs: refreshes {stub.refreshes}, reused refresh tokens {stub.reused}"
    )
    # the stub has no grace window: a second refresh of the same expiry would present a
    # spent refresh token and count as reused
    assert stub.refreshes >= 3
    assert stub.reused == 0
    assert len(jtis) == 1
    storage = first.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert "rt-" not in storage and "eyJ" not in storage  # tokens in memory only
    assert errors == []

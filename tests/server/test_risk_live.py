"""The risk engine over real sockets: ``tokenward serve`` on SQLite, clients bound to loopback
addresses in different /24 prefixes (``127.0.1.2``, ``127.0.2.2``, ...) play different places;
the decisions are read back from the server's JSON log (the security events). The browser
sign-in tests drive the authorization code flow with the Python SDK (``TokenManager``) and a
form-posting "browser" that carries the sign-in cookie."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from support.oauth import hidden, pkce, redirect_params
from support.oauth_live import Browser, Live
from support.serve import Served, free_port, serve
from support.server import ADMIN_PW
from tokenward.client import LoginRequired, TokenManager

CONSOLE = "tokenward-console"
PW = "a long user password"
CHEAP = {
    "TOKENWARD_PASSWORD_TIME_COST": "1",
    "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
    "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
    "TOKENWARD_LOGIN_LIMIT_PER_IP": "1000/minute",
}


def _serve(tmp: Path, extra: dict[str, str]) -> Iterator[Served]:
    port = free_port()
    settings = {**CHEAP, "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}", **extra}
    with serve(settings, cwd=tmp, port=port) as served:
        yield served


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The default policy."""
    yield from _serve(tmp_path_factory.mktemp("risk-default"), {})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Concurrent use ends the session; fast refreshing asks for a new sign-in; a 4 s block;
    spraying flagged after 5 usernames."""
    yield from _serve(
        tmp_path_factory.mktemp("risk-strict"),
        {
            "TOKENWARD_RISK_CONCURRENT_USE": "flag,revoke_session",
            "TOKENWARD_RISK_REFRESH_VELOCITY": "flag,step_up",
            "TOKENWARD_RISK_VELOCITY_MAX": "3",
            "TOKENWARD_RISK_BLOCK_SECONDS": "4",
            "TOKENWARD_RISK_SPRAYING_USERNAMES": "5",
        },
    )


@pytest.fixture(scope="module")
def stepping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Concurrent use, and a sign-in from a new network, ask for a new sign-in."""
    yield from _serve(
        tmp_path_factory.mktemp("risk-step-up"),
        {
            "TOKENWARD_RISK_CONCURRENT_USE": "flag,step_up",
            "TOKENWARD_RISK_NEW_DEVICE": "flag,step_up",
        },
    )


def client(served: Served, address: str) -> httpx.Client:
    return httpx.Client(
        base_url=served.base,
        transport=httpx.HTTPTransport(local_address=address),
        timeout=20,
    )


def add_user(served: Served, name: str) -> None:
    with client(served, "127.0.0.1") as http:
        r = http.post("/login", json={"username": "admin", "password": ADMIN_PW, "scope": "admin"})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = http.post(
            "/admin/users",
            json={"username": name, "password": PW},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code in (200, 201), r.text


def login(http: httpx.Client, name: str, password: str = PW) -> httpx.Response:
    return http.post("/login", json={"username": name, "password": password})


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CONSOLE},
    )


def events(served: Served, name: str = "risk_decision") -> list[dict[str, Any]]:
    out = []
    for line in served.log_path.read_text(errors="replace").splitlines():
        if name in line and line.startswith("{"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("event") == name:
                out.append(record)
    return out


def wait_for_event(served: Served, pred: Any, name: str = "risk_decision") -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in events(served, name) if pred(e)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching {name} event in:\n{served.log_tail()}")
        time.sleep(0.05)  # the log line is written by another process


def test_same_family_from_two_prefixes_ends_the_session_and_the_event_says_why(
    strict: Served,
) -> None:
    add_user(strict, "carol")
    with client(strict, "127.0.1.2") as home, client(strict, "127.0.2.2") as thief:
        r = login(home, "carol")
        assert r.status_code == 200, r.text
        first = r.json()
        r = refresh(home, first["refresh_token"])
        assert r.status_code == 200, r.text
        stolen = r.json()["refresh_token"]
        r = refresh(thief, stolen)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
        assert "two places" in r.json()["error_description"]
        # revoke_session denylists the sid: the session's access tokens stop working too
        r = home.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert r.status_code == 401
        # carol signs in again and sees why her session ended
        again = login(home, "carol").json()["access_token"]
        r = home.get("/sessions/notices", headers={"Authorization": f"Bearer {again}"})
        assert r.status_code == 200
        assert r.json()[0]["text"].startswith("session ended: used from two places")
    event = wait_for_event(strict, lambda e: e.get("sub") == "carol")
    assert event["stage"] == "refresh"
    assert event["actions"] == ["flag", "revoke_session"]
    assert event["scores"] == {"concurrent_use": 1.0}
    assert "127.0.1.0/24" in event["reason"] and "127.0.2.0/24" in event["reason"]


def test_a_user_moving_between_networks_is_not_logged_out_by_the_defaults(
    defaults: Served,
) -> None:
    add_user(defaults, "dave")
    with client(defaults, "127.0.1.2") as wifi, client(defaults, "127.0.2.2") as mobile:
        r = login(wifi, "dave")
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        for http in (mobile, wifi, mobile, wifi):
            r = refresh(http, token)
            assert r.status_code == 200, r.text
            token = r.json()["refresh_token"]
        r = wifi.get("/userinfo", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert r.status_code == 200
    # the quick switches were seen and flagged for an operator, and nothing more
    event = wait_for_event(defaults, lambda e: e.get("sub") == "dave")
    assert event["actions"] == ["flag"]
    assert "concurrent_use" in event["scores"]


def test_step_up_revokes_the_refresh_token_but_access_tokens_live_on(strict: Served) -> None:
    add_user(strict, "erin")
    with client(strict, "127.0.6.2") as http:
        r = login(http, "erin")
        assert r.status_code == 200, r.text
        body = r.json()
        token = body["refresh_token"]
        statuses = []
        for _ in range(4):
            r = refresh(http, token)
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
            body = r.json()
            token = body["refresh_token"]
        assert statuses == [200, 200, 200, 400]
        assert r.json()["error"] == "invalid_grant"
        assert "sign in again" in r.json()["error_description"]
        assert "refreshes in" in r.json()["error_description"]
        assert refresh(http, token).status_code == 400  # the family is gone
        r = http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert r.status_code == 200  # not denylisted: lives out its lifetime
    event = wait_for_event(strict, lambda e: e.get("sub") == "erin")
    assert "step_up" in event["actions"]
    assert event["signals"][0]["name"] == "refresh_velocity"


def test_fifty_failed_sign_ins_across_fifty_usernames_block_the_prefix_for_the_configured_time(
    strict: Served,
) -> None:
    add_user(strict, "frank")
    with client(strict, "127.0.3.2") as attacker, client(strict, "127.0.4.2") as other:
        statuses = [login(attacker, f"victim{i}", f"guess {i}").status_code for i in range(50)]
        assert statuses[:20] == [400] * 20  # wrong passwords, until the 20th username
        assert set(statuses[20:]) == {429}  # then the whole prefix is refused
        r = login(attacker, "frank")  # even with the right password
        assert r.status_code == 429
        retry = int(r.headers["Retry-After"])
        assert 1 <= retry <= 5
        assert "blocked" in r.json()["error_description"]
        assert login(other, "frank").status_code == 200  # another prefix still signs in
        time.sleep(retry + 0.5)  # the configured block time passes
        assert login(attacker, "frank").status_code == 200
    event = wait_for_event(strict, lambda e: "credential_stuffing" in e.get("scores", {}))
    assert event["actions"] == ["flag", "block_prefix"]
    assert event["prefix"] == "127.0.3.0/24"


def test_password_spraying_is_seen_by_a_keyed_hash_and_the_password_is_never_logged(
    strict: Served,
) -> None:
    sprayed = "Winter2026!sprayed"
    with client(strict, "127.0.5.2") as http:
        for i in range(5):
            assert login(http, f"spray{i}", sprayed).status_code == 400
    event = wait_for_event(strict, lambda e: "password_spraying" in e.get("scores", {}))
    assert event["actions"] == ["flag"]
    assert "5 usernames" in event["reason"]
    assert sprayed not in strict.log_path.read_text(errors="replace")


# -- the browser sign-in session, and access tokens at /userinfo --------------------------------
CLI = "cli"
CLI_CB = "http://127.0.0.1/callback"  # loopback, any port (RFC 8252 §7.3): the SDK's redirect


def admin(served: Served, method: str, path: str, **kw: Any) -> httpx.Response:
    with client(served, "127.0.0.1") as http:
        r = http.post("/login", json={"username": "admin", "password": ADMIN_PW, "scope": "admin"})
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return http.request(method, path, headers=headers, **kw)


def add_code_client(served: Served) -> None:
    r = admin(
        served,
        "POST",
        "/admin/clients",
        json={
            "client_id": CLI,
            "public": True,
            "grants": ["authorization_code", "refresh_token"],
            "redirect_uris": [CLI_CB],
            "resources": [served.base],
            "scopes": ["openid", "profile"],
        },
    )
    assert r.status_code in (201, 409), r.text  # 409: another test of the module made it


class Place(httpx.BaseTransport):
    """A transport whose requests leave from ``address`` (change it to move the client)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._by_address: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.address not in self._by_address:
            self._by_address[self.address] = httpx.HTTPTransport(local_address=self.address)
        return self._by_address[self.address].handle_request(request)

    def close(self) -> None:
        for t in self._by_address.values():
            t.close()


def browser_at(served: Served, address: str) -> Browser:
    browser = Browser(Live(served.base, served.proc))
    browser.http.close()
    browser.http = httpx.Client(
        transport=httpx.HTTPTransport(local_address=address), timeout=20, follow_redirects=False
    )
    return browser


def sdk_sign_in(served: Served, browser: Browser, user: str, place: Place) -> TokenManager:
    """``TokenManager.login_authorization_code`` with ``browser`` playing the user's browser;
    the SDK's own calls leave from ``place``."""

    def open_browser(url: str) -> None:
        location = browser.authorize(url, username=user, password=PW)
        browser.http.get(location)  # the redirect to the SDK's loopback listener

    manager = TokenManager(
        served.base,
        CLI,
        scope="openid profile",
        http=httpx.Client(transport=place, timeout=20),
    )
    manager.login_authorization_code(open_browser=open_browser, timeout=20)
    return manager


def silent(served: Served, browser: Browser) -> dict[str, str]:
    """``prompt=none`` (OpenID Connect Core §3.1.2.1): the redirect's parameters."""
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": CLI,
        "redirect_uri": "http://127.0.0.1:9/callback",
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "none",
    }
    r = browser.get(f"{served.base}/authorize?" + httpx.QueryParams(query).__str__())
    assert r.status_code == 302, r.text[:300]
    return redirect_params(r.headers["location"])


def test_step_up_ends_the_browser_sign_in_so_prompt_none_answers_login_required_and_the_sdk_raises_login_required(  # noqa: E501
    stepping: Served,
) -> None:
    add_user(stepping, "gina")
    add_code_client(stepping)
    browser = browser_at(stepping, "127.0.1.2")
    place = Place("127.0.1.2")
    manager = sdk_sign_in(stepping, browser, "gina", place)
    try:
        assert "code" in silent(stepping, browser)  # signed in: no page needed
        manager.token_after_rejection(manager.access_token())  # a refresh from 127.0.1.2
        place.address = "127.0.2.2"  # the same family, refreshed from another network
        with pytest.raises(LoginRequired) as info:
            manager.token_after_rejection(manager.access_token())
        assert info.value.error == "invalid_grant"
        assert "sign in again: used from two places" in str(info.value)
        # OpenID Connect Core §3.1.2.6: the sign-in session ended too, no silent sign-in
        params = silent(stepping, browser)
        assert params["error"] == "login_required"
        assert "code" not in params
    finally:
        manager.close()
        browser.close()
    event = wait_for_event(stepping, lambda e: e.get("sub") == "gina")
    assert event["actions"] == ["flag", "step_up"]
    ended = wait_for_event(stepping, lambda e: e.get("sub") == "gina", name="signin_ended")
    assert ended["reason"] == "step_up_concurrent_use"


def test_access_token_used_at_userinfo_from_another_place_ends_the_session_and_says_why(
    strict: Served,
) -> None:
    add_user(strict, "hugo")
    add_code_client(strict)
    browser = browser_at(strict, "127.0.7.2")
    manager = sdk_sign_in(strict, browser, "hugo", Place("127.0.7.2"))
    try:
        access = manager.token_after_rejection(manager.access_token())  # refreshed at home
        with client(strict, "127.0.8.2") as thief:
            r = thief.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_token"
        assert r.json()["error_description"].startswith("session ended: used from two places")
        with pytest.raises(LoginRequired):  # the family is gone
            manager.token_after_rejection(access)
        assert silent(strict, browser)["error"] == "login_required"
    finally:
        manager.close()
        browser.close()
    event = wait_for_event(strict, lambda e: e.get("sub") == "hugo")
    assert event["stage"] == "access"
    assert event["actions"] == ["flag", "revoke_session"]
    assert "127.0.7.0/24" in event["reason"] and "127.0.8.0/24" in event["reason"]


def test_a_user_moving_networks_between_refresh_and_userinfo_is_not_logged_out_by_default(
    defaults: Served,
) -> None:
    add_user(defaults, "ivan")
    with client(defaults, "127.0.1.2") as wifi, client(defaults, "127.0.2.2") as mobile:
        r = login(wifi, "ivan")
        assert r.status_code == 200, r.text
        r = refresh(wifi, r.json()["refresh_token"])
        assert r.status_code == 200, r.text
        body = r.json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        assert mobile.get("/userinfo", headers=auth).status_code == 200
        assert wifi.get("/userinfo", headers=auth).status_code == 200
        assert refresh(wifi, body["refresh_token"]).status_code == 200
    event = wait_for_event(defaults, lambda e: e.get("sub") == "ivan" and e["stage"] == "access")
    assert event["actions"] == ["flag"]  # seen, for an operator; nothing more
    assert event["scores"] == {"concurrent_use": 1.0}


def sign_in_page(served: Served, browser: Browser) -> str:
    """``/authorize`` without a sign-in session: the sign-in page."""
    _, challenge = pkce()
    query = httpx.QueryParams(
        {
            "response_type": "code",
            "client_id": CLI,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "scope": "openid",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    r = browser.get(f"{served.base}/authorize?{query}")
    assert r.status_code == 200 and 'name="password"' in r.text, r.text[:300]
    return r.text


def submit(browser: Browser, page: str, username: str, password: str) -> httpx.Response:
    """The sign-in page's form."""
    return browser.post(
        "/authorize/signin",
        {
            "request_id": hidden(page, "request_id"),
            "csrf_token": hidden(page, "csrf_token"),
            "username": username,
            "password": password,
        },
    )


def test_failed_browser_sign_ins_count_for_stuffing_and_a_blocked_network_cannot_sign_in_there(
    strict: Served,
) -> None:
    """The sign-in page is no way around the block: its failures count, and it refuses a
    blocked prefix like ``/login`` does."""
    add_user(strict, "jade")
    add_code_client(strict)
    attacker, other = browser_at(strict, "127.0.9.2"), browser_at(strict, "127.0.10.2")
    try:
        page = sign_in_page(strict, attacker)
        statuses = []
        for i in range(21):
            r = submit(attacker, page, f"page-victim{i}", f"guess {i}")
            statuses.append(r.status_code)
            page = r.text  # the page again, with a new request id
        assert statuses[:20] == [401] * 20  # wrong passwords, until the 20th username
        assert statuses[20] == 429  # then the network is blocked, on the page ...
        with client(strict, "127.0.9.2") as http:
            assert login(http, "jade").status_code == 429  # ... and at /login
        r = submit(other, sign_in_page(strict, other), "jade", PW)  # another network signs in
        assert r.status_code in (200, 302, 303), r.text[:300]
    finally:
        attacker.close()
        other.close()
    event = wait_for_event(strict, lambda e: e.get("prefix") == "127.0.9.0/24")
    assert event["actions"] == ["flag", "block_prefix"]


def test_a_sign_in_at_the_browser_page_from_a_new_network_is_new_device_and_the_user_is_told(
    defaults: Served,
) -> None:
    add_user(defaults, "kim")
    add_code_client(defaults)
    home, away = browser_at(defaults, "127.0.11.2"), browser_at(defaults, "127.0.12.2")
    try:
        for browser in (home, away):
            r = submit(browser, sign_in_page(defaults, browser), "kim", PW)
            assert r.status_code in (200, 302, 303), r.text[:300]  # the default only logs
            assert browser.cookie is not None
    finally:
        home.close()
        away.close()
    with client(defaults, "127.0.12.2") as http:
        token = login(http, "kim").json()["access_token"]  # a network kim knows by now
        r = http.get("/sessions/notices", headers={"Authorization": f"Bearer {token}"})
    assert [n["text"] for n in r.json()] == ["new sign-in from 127.0.12.0/24"]


def test_a_policy_that_ends_sessions_on_new_device_refuses_the_browser_sign_in(
    stepping: Served,
) -> None:
    add_user(stepping, "lena")
    add_code_client(stepping)
    home, away = browser_at(stepping, "127.0.13.2"), browser_at(stepping, "127.0.14.2")
    try:
        r = submit(home, sign_in_page(stepping, home), "lena", PW)
        assert r.status_code in (200, 302, 303), r.text[:300]  # a first sign-in is no signal
        r = submit(away, sign_in_page(stepping, away), "lena", PW)
        assert r.status_code == 403
        assert "This sign-in was refused: new sign-in from 127.0.14.0/24" in r.text
        assert away.cookie is None  # no sign-in session started
    finally:
        home.close()
        away.close()
    event = wait_for_event(stepping, lambda e: e.get("sub") == "lena")
    assert event["stage"] == "sign_in"
    assert event["actions"] == ["flag", "step_up"]

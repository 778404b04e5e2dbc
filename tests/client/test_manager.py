"""TokenManager's rules against an in-test stub authorization server (``httpx.MockTransport``
speaking RFC 8414 / 6749 / 7009 / 7636 / 8628): storage safety, failure semantics, the one
retry, the interactive sign-ins; and the auth objects against the live server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.env import require_module
from tokenward.client import (
    ClientError,
    DeviceCode,
    FileTokenStorage,
    LoginRequired,
    MemoryTokenStorage,
    TemporarilyUnavailable,
    TokenManager,
    default_refresh_margin,
    is_invalid_token,
)

from .conftest import CONSOLE, USER, USER_PW, Live

ISSUER = "https://as.example"
SECRET_RT = "twr_stub-refresh-token-0123456789"


class Stub:
    """A scripted authorization server: ``answers[path]`` is a list of (status, json, headers)
    consumed in order (the last one repeats); every request is recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self.requests: list[httpx.Request] = []
        self.hits: Counter[str] = Counter()
        self.fail: set[str] = set()  # paths whose connection fails
        self.meta: dict[str, Any] = {
            "issuer": ISSUER,
            "token_endpoint": f"{ISSUER}/token",
            "revocation_endpoint": f"{ISSUER}/revoke",
            "authorization_endpoint": f"{ISSUER}/authorize",
            "device_authorization_endpoint": f"{ISSUER}/device",
        }

    def on(self, path: str, *answers: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        self.answers[path] = [(a[0], a[1], a[2] if len(a) > 2 else {}) for a in answers]  # type: ignore[misc]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(request)
        self.hits[path] += 1
        if path in self.fail:
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=self.meta)
        queue = self.answers.get(path)
        if not queue:
            return httpx.Response(404, json={"error": "not_found"})
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(status, json=body, headers=headers)

    def form(self, i: int = -1, path: str = "/token") -> dict[str, str]:
        sent = [r for r in self.requests if r.url.path == path][i]
        return {k: v[0] for k, v in parse_qs(sent.content.decode()).items()}


def pair(n: int = 1, expires_in: int = 300, refresh: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "access_token": f"at-{n}",
        "token_type": "Bearer",
        "expires_in": expires_in,
    }
    if refresh:
        out["refresh_token"] = f"{SECRET_RT}-{n}"
    return out


def manager(stub: Stub, **kw: Any) -> TokenManager:
    return TokenManager(ISSUER, "cli", http=httpx.Client(transport=httpx.MockTransport(stub)), **kw)


def stored(
    tm: TokenManager, *, expires_in: float, lifetime: float = 300, access: str = "at-0"
) -> None:
    tm.storage.save(
        {
            "access_token": access,
            "expires_at": time.time() + expires_in,
            "lifetime": lifetime,
            "refresh_token": SECRET_RT,
            "scope": None,
            "grant": "password",
        }
    )


# -- margins and challenges ------------------------------------------------------------------------


def test_default_refresh_margin_is_a_fifth_of_the_lifetime_at_most_60_seconds() -> None:
    assert default_refresh_margin(2) == pytest.approx(0.4)
    assert default_refresh_margin(100) == pytest.approx(20)
    assert default_refresh_margin(900) == 60
    assert default_refresh_margin(0) == 0


def test_only_invalid_token_challenges_are_retried() -> None:
    assert is_invalid_token(401, 'Bearer error="invalid_token", error_description="expired"')
    assert not is_invalid_token(401, 'Bearer realm="api"')
    assert not is_invalid_token(403, 'Bearer error="insufficient_scope"')
    assert not is_invalid_token(401, None)


def test_token_is_refreshed_only_inside_the_margin() -> None:
    stub = Stub()
    stub.on("/token", (200, pair(1)))
    tm = manager(stub)
    stored(tm, expires_in=100, lifetime=300)  # margin 60 s: not yet
    assert tm.access_token() == "at-0"
    stored(tm, expires_in=59, lifetime=300)
    tm._cache = None
    assert tm.access_token() == "at-1"
    assert stub.form()["grant_type"] == "refresh_token"
    assert stub.form()["refresh_token"] == SECRET_RT
    assert stub.hits["/token"] == 1


# -- storage ---------------------------------------------------------------------------------------


def test_file_storage_writes_an_owner_only_file_atomically(tmp_path: Path) -> None:
    s = FileTokenStorage(tmp_path / "dir" / "tokens.json")
    s.save({"access_token": "a"})
    assert (tmp_path / "dir" / "tokens.json").stat().st_mode & 0o777 == 0o600
    s.save({"access_token": "b"})
    assert s.load() == {"access_token": "b"}
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["tokens.json"]  # no temp left
    s.clear()
    assert s.load() is None


def test_file_storage_refuses_a_group_or_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"access_token": "a", "refresh_token": SECRET_RT}))
    os.chmod(path, 0o644)
    with pytest.raises(ClientError, match="chmod 600") as err:
        FileTokenStorage(path).load()
    assert SECRET_RT not in str(err.value)


def test_file_storage_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    os.chmod(target, 0o600)
    (tmp_path / "tokens.json").symlink_to(target)
    with pytest.raises(ClientError):
        FileTokenStorage(tmp_path / "tokens.json").load()


def test_tokens_never_appear_in_reprs_or_errors(tmp_path: Path) -> None:
    stub = Stub()
    stub.on("/token", (400, {"error": "invalid_grant", "error_description": "session revoked"}))
    tm = manager(stub, storage=FileTokenStorage(tmp_path / "t.json"))
    stored(tm, expires_in=-1, access="eyJsecret-access")
    tm._cache = None
    with pytest.raises(LoginRequired) as err:
        tm.access_token()
    text = " ".join(
        [repr(tm), repr(tm.storage), repr(tm.httpx_auth()), str(err.value), repr(err.value)]
    )
    assert SECRET_RT not in text and "eyJsecret-access" not in text
    assert "session revoked" in str(err.value)


# -- failure semantics -----------------------------------------------------------------------------


def test_invalid_grant_on_refresh_clears_storage_and_raises_login_required() -> None:
    stub = Stub()
    stub.on("/token", (400, {"error": "invalid_grant"}))
    tm = manager(stub)
    stored(tm, expires_in=-1)
    with pytest.raises(LoginRequired):
        tm.access_token()
    assert tm.storage.load() is None
    with pytest.raises(LoginRequired):  # and no second refresh attempt
        tm.access_token()
    assert stub.hits["/token"] == 1


def test_network_failure_keeps_the_tokens_and_is_retryable() -> None:
    stub = Stub()
    stub.fail.add("/token")
    tm = manager(stub)
    stored(tm, expires_in=-1)
    with pytest.raises(TemporarilyUnavailable):
        tm.access_token()
    assert tm.storage.load() is not None


def test_503_keeps_the_tokens_and_reports_retry_after() -> None:
    stub = Stub()
    stub.on("/token", (503, {"error": "temporarily_unavailable"}, {"Retry-After": "7"}))
    tm = manager(stub)
    stored(tm, expires_in=-1)
    with pytest.raises(TemporarilyUnavailable) as err:
        tm.access_token()
    assert err.value.retry_after == 7 and err.value.status == 503
    assert tm.storage.load() is not None


def test_a_failed_early_refresh_still_returns_the_unexpired_token() -> None:
    stub = Stub()
    stub.on("/token", (503, {"error": "temporarily_unavailable"}))
    tm = manager(stub)
    stored(tm, expires_in=30, lifetime=300)  # inside the 60 s margin, not expired
    assert tm.access_token() == "at-0"
    assert tm.access_token() == "at-0"  # backing off: no second attempt at once
    assert stub.hits["/token"] == 1


def test_client_credentials_are_renewed_the_same_way() -> None:
    stub = Stub()
    stub.on("/token", (200, pair(1, expires_in=1, refresh=False)), (200, pair(2, refresh=False)))
    tm = TokenManager(
        ISSUER,
        "svc",
        "s3cret",
        refresh_margin=5,
        http=httpx.Client(transport=httpx.MockTransport(stub)),
    )
    tm.client_credentials()
    assert (
        stub.requests[-1].headers["Authorization"]
        == "Basic " + base64.b64encode(b"svc:s3cret").decode()
    )
    assert tm.access_token() == "at-2"  # a 1-second token inside a 5-second margin: due
    assert [stub.form(i)["grant_type"] for i in range(2)] == ["client_credentials"] * 2


def test_metadata_naming_another_issuer_is_refused() -> None:
    stub = Stub()
    stub.meta["issuer"] = "https://evil.example"
    with pytest.raises(ClientError, match="issuer"):
        manager(stub).login_password("a", "b")


def test_logout_revokes_the_refresh_token_and_clears() -> None:
    stub = Stub()
    stub.on("/revoke", (200, {}))
    tm = manager(stub)
    stored(tm, expires_in=100)
    tm.logout()
    assert stub.form(path="/revoke") == {
        "token": SECRET_RT,
        "token_type_hint": "refresh_token",
        "client_id": "cli",
    }
    assert tm.storage.load() is None


def test_logout_keeps_the_tokens_when_the_server_is_unreachable() -> None:
    stub = Stub()
    stub.fail.add("/revoke")
    tm = manager(stub)
    stored(tm, expires_in=100)
    with pytest.raises(TemporarilyUnavailable):
        tm.logout()
    assert tm.storage.load() is not None


# -- the one retry ---------------------------------------------------------------------------------


def _api_stub(stub: Stub, api_answers: list[int]) -> httpx.Client:
    answers = list(api_answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.example":
            stub.hits["api"] += 1
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            hdr = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
            return httpx.Response(status, headers=hdr)
        return stub(request)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_a_401_invalid_token_is_refreshed_and_retried_exactly_once() -> None:
    stub = Stub()
    stub.on("/token", (200, pair(1)), (200, pair(2)))
    http = _api_stub(stub, [401])  # the API refuses every token
    tm = TokenManager(ISSUER, "cli", http=http)
    stored(tm, expires_in=100)
    r = http.post("https://api.example/x", content=b"body", auth=tm.httpx_auth())
    assert r.status_code == 401  # the second answer goes back to the caller
    assert stub.hits["api"] == 2 and stub.hits["/token"] == 1


def test_the_retry_sends_the_new_token_and_the_same_body() -> None:
    stub = Stub()
    stub.on("/token", (200, pair(1)))
    http = _api_stub(stub, [401, 200])
    tm = TokenManager(ISSUER, "cli", http=http)
    stored(tm, expires_in=100)
    r = http.post("https://api.example/x", content=b"payload", auth=tm.httpx_auth())
    assert r.status_code == 200
    assert r.request.headers["Authorization"] == "Bearer at-1" and r.request.content == b"payload"


# -- interactive sign-ins (stub server speaking the standard protocol) ----------------------------


def test_authorization_code_with_pkce_over_a_loopback_redirect() -> None:
    stub = Stub()
    seen: dict[str, str] = {}

    def browser(url: str) -> None:  # plays the user agent + the authorization endpoint
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        seen.update(q)
        assert url.startswith(f"{ISSUER}/authorize?")
        redirect = f"{q['redirect_uri']}?code=the-code&state={q['state']}&iss={ISSUER}"
        threading.Thread(target=lambda: httpx.get(redirect), daemon=True).start()

    stub.on("/token", (200, pair(1)))
    tm = manager(stub)
    tm.login_authorization_code(open_browser=browser, timeout=10)
    assert seen["code_challenge_method"] == "S256" and seen["response_type"] == "code"
    assert urlsplit(seen["redirect_uri"]).hostname == "127.0.0.1"  # RFC 8252 §7.3
    sent = stub.form()
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "the-code"
    assert sent["redirect_uri"] == seen["redirect_uri"]
    digest = hashlib.sha256(sent["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == seen["code_challenge"]
    assert tm.access_token() == "at-1"


def test_authorization_code_refuses_a_redirect_with_another_state() -> None:
    stub = Stub()

    def browser(url: str) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        threading.Thread(
            target=lambda: httpx.get(f"{q['redirect_uri']}?code=c&state=forged"), daemon=True
        ).start()

    with pytest.raises(ClientError, match="state"):
        manager(stub).login_authorization_code(open_browser=browser, timeout=10)
    assert stub.hits["/token"] == 0


def test_device_flow_shows_the_code_and_polls_until_approved() -> None:
    stub = Stub()
    stub.on(
        "/device",
        (
            200,
            {
                "device_code": "dev-123",
                "user_code": "WDJB-MJHT",
                "verification_uri": f"{ISSUER}/device",
                "verification_uri_complete": f"{ISSUER}/device?user_code=WDJB-MJHT",
                "expires_in": 600,
                "interval": 0,
            },
        ),
    )
    stub.on(
        "/token",
        (400, {"error": "authorization_pending"}),
        (400, {"error": "authorization_pending"}),
        (200, pair(1)),
    )
    shown: list[DeviceCode] = []
    tm = manager(stub)
    tm.login_device(on_code=shown.append)
    assert [c.user_code for c in shown] == ["WDJB-MJHT"]
    assert "dev-123" not in repr(shown[0])
    polls = [stub.form(i) for i in range(3)]
    assert {p["grant_type"] for p in polls} == {"urn:ietf:params:oauth:grant-type:device_code"}
    assert tm.access_token() == "at-1"


def test_device_flow_denied_raises_with_the_servers_code() -> None:
    stub = Stub()
    stub.on(
        "/device",
        (
            200,
            {
                "device_code": "d",
                "user_code": "U",
                "verification_uri": "v",
                "expires_in": 60,
                "interval": 0,
            },
        ),
    )
    stub.on("/token", (400, {"error": "access_denied"}))
    with pytest.raises(ClientError) as err:
        manager(stub).login_device(on_code=lambda c: None)
    assert err.value.error == "access_denied"


# -- auth objects against the live server ----------------------------------------------------------


def _with_rejected_token(live: Live) -> TokenManager:
    """Signed in, but holding an access token the server refuses (not expired locally)."""
    tm = TokenManager(live.base, CONSOLE, storage=MemoryTokenStorage())
    tm.login_password(USER, USER_PW)
    data = tm.storage.load()
    assert data is not None
    tm.storage.save({**data, "access_token": "not.a.token", "expires_at": time.time() + 60})
    tm._cache = None
    return tm


def test_httpx_auth_recovers_from_a_refused_token_with_one_refresh(live: Live) -> None:
    tm = _with_rejected_token(live)
    before = live.counters()
    r = httpx.get(f"{live.base}/userinfo", auth=tm.httpx_auth())
    after = live.counters()
    assert r.status_code == 200 and r.json()["sub"] == USER
    assert after["requests/token"] - before.get("requests/token", 0) == 1
    assert after["requests/userinfo"] - before.get("requests/userinfo", 0) == 2


def test_requests_auth_recovers_from_a_refused_token_with_one_refresh(live: Live) -> None:
    requests = require_module("requests")
    tm = _with_rejected_token(live)
    before = live.counters()
    r = requests.get(f"{live.base}/userinfo", auth=tm.requests_auth(), timeout=10)
    after = live.counters()
    assert r.status_code == 200 and r.json()["sub"] == USER
    assert after["requests/token"] - before.get("requests/token", 0) == 1
    assert after["requests/userinfo"] - before.get("requests/userinfo", 0) == 2


def test_logout_ends_the_session_on_the_server(live: Live) -> None:
    tm = TokenManager(live.base, CONSOLE)
    tm.login_password(USER, USER_PW)
    refresh = tm.storage.load()["refresh_token"]  # type: ignore[index]
    tm.logout()
    r = httpx.post(
        f"{live.base}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CONSOLE},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with pytest.raises(LoginRequired):
        tm.access_token()


def test_keyring_storage_keeps_the_token_set_as_one_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from tokenward.client import KeyringTokenStorage

    secrets_: dict[tuple[str, str], str] = {}
    fake = types.ModuleType("keyring")
    fake.get_password = lambda s, u: secrets_.get((s, u))  # type: ignore[attr-defined]
    fake.set_password = lambda s, u, p: secrets_.__setitem__((s, u), p)  # type: ignore[attr-defined]
    fake.delete_password = lambda s, u: secrets_.pop((s, u))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", fake)
    s = KeyringTokenStorage("my-cli", "alice")
    s.save({"access_token": "a", "refresh_token": SECRET_RT})
    assert s.load() == {"access_token": "a", "refresh_token": SECRET_RT}
    assert SECRET_RT not in repr(s)
    s.clear()
    assert s.load() is None and secrets_ == {}


def test_keyring_storage_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from tokenward.client import KeyringTokenStorage

    monkeypatch.setitem(sys.modules, "keyring", None)  # import keyring → ImportError
    with pytest.raises(ClientError, match=r"tokenward\[keyring\]"):
        KeyringTokenStorage()


def test_sign_in_and_refresh_log_no_token(caplog: pytest.LogCaptureFixture) -> None:
    stub = Stub()
    stub.on("/token", (200, pair(1, expires_in=1)), (200, pair(2)))
    tm = manager(stub, refresh_margin=5)
    with caplog.at_level("DEBUG", logger="tokenward.client"):
        tm.login_password("alice", "pw")
        assert tm.access_token() == "at-2"
    assert caplog.records  # sign-in and refresh are logged...
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert SECRET_RT not in logged and "at-1" not in logged and "at-2" not in logged  # ...bare


def test_logout_keeps_the_tokens_when_even_discovery_fails() -> None:
    stub = Stub()
    stub.fail.add("/.well-known/oauth-authorization-server")
    tm = manager(stub)
    stored(tm, expires_in=100)
    with pytest.raises(TemporarilyUnavailable):
        tm.logout()
    assert tm.storage.load() is not None


def test_authorization_code_requires_iss_when_the_server_promises_it() -> None:
    stub = Stub()
    stub.meta["authorization_response_iss_parameter_supported"] = True

    def browser(url: str) -> None:  # a mix-up: the redirect comes without the iss parameter
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        threading.Thread(
            target=lambda: httpx.get(f"{q['redirect_uri']}?code=c&state={q['state']}"),
            daemon=True,
        ).start()

    with pytest.raises(ClientError, match="iss"):
        manager(stub).login_authorization_code(open_browser=browser, timeout=10)
    assert stub.hits["/token"] == 0

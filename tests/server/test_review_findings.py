"""Regression tests for the findings of the security review of the server and the lifecycle
(``docs/security.md``, "Review findings"). Each test is named after its finding."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from support.env import service_missing
from support.server import ALICE_PW, Server, basic, bearer, cheap_hasher, make_settings
from support.stores import POSTGRES_URL, drop_postgres_schema, postgres_problem
from tokenward.clock import FrozenClock
from tokenward.errors import RateLimited
from tokenward.server import create_app
from tokenward.server.ratelimit import LoginThrottle


def _cc_token(server: Server, client_id: str, secret: str) -> str:
    r = server.http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


# -- F1: the per-account login limit did not hold under concurrent guesses -----------------------


def test_f1_concurrent_password_guesses_cannot_overrun_the_account_limit(server: Server) -> None:
    """20 wrong passwords for one account at once, limit 5/minute: before the fix every one of
    them passed the limit test before the first failure was counted (20 x invalid_grant)."""
    app = server.http.app

    async def storm() -> list[int]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            data = [
                {"grant_type": "password", "username": "alice", "password": f"guess {i}"}
                for i in range(20)
            ]
            rs = await asyncio.gather(
                *[c.post("/token", data={**d, "client_id": "app"}) for d in data]
            )
            # the real password is refused too while the account's budget (on this network)
            # is spent
            real = await c.post(
                "/token",
                data={"grant_type": "password", "username": "alice", "password": ALICE_PW,
                      "client_id": "app"},
            )  # fmt: skip
            return [r.status_code for r in rs] + [real.status_code]

    statuses = server.run(storm)
    assert statuses.pop() == 429
    assert statuses.count(400) == 5  # exactly the budget reached the password check
    assert statuses.count(429) == 15


async def test_f1_throttle_reserves_the_account_attempt_before_the_check() -> None:
    throttle = LoginThrottle(per_account="2/minute", per_ip="100/minute")
    await asyncio.gather(*[throttle.check("bob", "10.0.0.1") for _ in range(2)])
    with pytest.raises(RateLimited):
        await throttle.check("bob", "10.0.0.1")
    await throttle.succeeded(
        "bob", "10.0.0.1"
    )  # a successful login gives the account its budget back
    await throttle.check("bob", "10.0.0.1")


def test_f1_successful_logins_do_not_spend_the_account_budget(server: Server) -> None:
    for _ in range(8):  # more than the 5/minute budget
        assert server.password().status_code == 200


def test_f1_failures_still_count_per_ip(server_factory: Callable[..., Server]) -> None:
    server = server_factory(login_limit_per_ip="3/minute")
    for name in ("u1", "u2", "u3"):
        assert server.password(username=name, password="nope").status_code == 400
    assert server.password().status_code == 429


# -- F2: a client_credentials token acted on the user whose name equals the client id -----------


def _collision(server: Server) -> tuple[str, dict[str, Any]]:
    """A confidential client registered as ``alice`` (the name of a user) and alice's login."""

    async def add() -> str:
        _, secret = await server.runtime.clients.create(
            "alice", grants=("client_credentials",), scopes=("read",), resources=("api",)
        )
        assert secret is not None
        return secret

    secret = server.run(add)
    return _cc_token(server, "alice", secret), server.login()


def test_f2_client_token_does_not_list_the_same_named_users_sessions(server: Server) -> None:
    client_token, user = _collision(server)
    assert server.http.get("/sessions", headers=bearer(client_token)).json() == []
    own = server.http.get("/sessions", headers=bearer(user["access_token"])).json()
    assert len(own) == 1  # the user still sees their session


def test_f2_client_token_cannot_delete_the_same_named_users_session(server: Server) -> None:
    client_token, user = _collision(server)
    sid = server.http.get("/sessions", headers=bearer(user["access_token"])).json()[0]
    r = server.http.delete(f"/sessions/{sid['session_id']}", headers=bearer(client_token))
    assert r.status_code == 404
    assert server.http.get("/userinfo", headers=bearer(user["access_token"])).status_code == 200


def test_f2_client_token_cannot_log_the_same_named_user_out_everywhere(server: Server) -> None:
    client_token, user = _collision(server)
    r = server.http.post("/logout-all", headers=bearer(client_token))
    assert r.status_code == 403
    assert r.json()["error"] == "insufficient_scope"
    assert server.http.get("/userinfo", headers=bearer(user["access_token"])).status_code == 200
    refreshed = server.refresh(user["refresh_token"])
    assert refreshed.status_code == 200


def test_f2_userinfo_of_a_client_token_is_not_the_same_named_user(server: Server) -> None:
    async def add() -> str:
        _, secret = await server.runtime.clients.create(
            "root", grants=("client_credentials",), scopes=("read",), resources=("api",)
        )
        assert secret is not None
        return secret

    token = _cc_token(server, "root", server.run(add))  # "root" is an admin user too
    info = server.http.get("/userinfo", headers=bearer(token)).json()
    assert info == {"sub": "root"}  # a third-party client's token: no user fields at all
    admin = server.login(username="root", password="admin password 1")
    me = server.http.get("/userinfo", headers=bearer(admin["access_token"])).json()
    assert me["is_admin"] is True and me["preferred_username"] == "root"


def test_f2_user_login_with_the_real_password_is_unaffected(server: Server) -> None:
    assert server.password(password=ALICE_PW).status_code == 200


# -- F3: made-up HTTP methods grew the latency histogram's label set without bound --------------


def test_f3_made_up_http_methods_do_not_grow_the_metrics_labels(server: Server) -> None:
    for i in range(25):
        assert server.http.request(f"BREW{i}", "/healthz").status_code == 405
    text = server.http.get("/metrics").text
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("tokenward_http_request") and 'method="' in line
    }
    assert "other" in methods
    assert not any(m.startswith("BREW") for m in methods)
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


# -- F4: a NUL in a username, client id or path id was a 500 on PostgreSQL ---------------------

_NUL_PROBES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/token", {"data": {"grant_type": "password", "username": "a\x00b", "password": "x",
                                 "client_id": "app"}}),
    ("POST", "/token", {"data": {"grant_type": "password", "username": "u", "password": "x",
                                 "client_id": "a\x00pp"}}),
    ("POST", "/token", {"data": {"grant_type": "client_credentials"},
                        "headers": basic("a%00b", "secret")}),
    ("POST", "/login", {"json": {"username": "a\x00b", "password": "x", "client_id": "app"}}),
    ("POST", "/login", {"json": {"username": "alice", "password": "x", "client_id": "a\x00"}}),
    ("GET", "/revocations", {"headers": basic("x%00", "y")}),
    ("POST", "/introspect", {"data": {"token": "x"}, "headers": basic("x%00", "y")}),
]  # fmt: skip


def _nul_statuses(server: Server) -> list[int]:
    return [server.http.request(m, p, **kw).status_code for m, p, kw in _NUL_PROBES]


def test_f4_nul_in_names_is_refused_before_the_store(server: Server) -> None:
    """On every store the NUL probes are ordinary failures (the memory store shows the answers;
    the PostgreSQL test below shows they no longer reach the driver)."""
    # a NUL in a body field is refused at the edge (F15: 400); in Basic credentials it is an
    # ordinary client-authentication failure (401)
    assert _nul_statuses(server) == [400, 400, 401, 400, 400, 401, 401]
    admin = server.login(username="root", password="admin password 1")
    for method, path in [
        ("DELETE", "/sessions/a%00b"),
        ("DELETE", "/admin/sessions/a%00b"),
        ("POST", "/admin/users/a%00b/disable"),
        ("POST", "/admin/subjects/a%00b/revoke"),
        ("GET", "/admin/subjects/a%00b/sessions"),
    ]:
        r = server.http.request(method, path, headers=bearer(admin["access_token"]))
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == "invalid_request"


@pytest.mark.services
def test_f4_nul_in_names_is_not_a_500_on_postgresql() -> None:
    problem = postgres_problem()
    if problem is not None:
        service_missing(problem)
    schema = "tw_review_" + secrets.token_hex(4)
    sep = "&" if "?" in POSTGRES_URL else "?"
    settings = make_settings(
        store_url=f"{POSTGRES_URL}{sep}schema={schema}", key_encryption_key="A" * 43
    )
    app = create_app(settings, clock=FrozenClock(1_800_000_000.0), password_hasher=cheap_hasher())
    try:
        with TestClient(app, base_url="https://testserver") as http:
            rt = app.state.runtime
            http.portal.call(  # type: ignore[union-attr]
                partial(rt.clients.create, "app", public=True, grants=("password",))
            )
            ok = http.post("/token", data={"grant_type": "password", "username": "nobody",
                                           "password": "x", "client_id": "app"})  # fmt: skip
            assert ok.status_code == 400  # an ordinary failure on this store
            statuses = [http.request(m, p, **kw).status_code for m, p, kw in _NUL_PROBES]
            assert statuses == [400, 400, 401, 400, 400, 401, 401]
    finally:
        drop_postgres_schema(schema)


# -- F5: a token's own alg reached the WWW-Authenticate header raw (500, header injection) ------


def _b64(obj: dict[str, Any]) -> str:
    import base64

    import orjson

    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def test_f5_non_latin1_or_crlf_alg_is_a_401_with_a_clean_challenge(server: Server) -> None:
    kid = server.runtime.keyring.active.kid
    for alg in ("日本", "ES256\r\nX-Injected: 1", "ES256\x00"):
        token = f"{_b64({'alg': alg, 'kid': kid, 'typ': 'at+jwt'})}.{_b64({'sub': 'x'})}.AAAA"
        r = server.http.get("/userinfo", headers=bearer(token))
        assert r.status_code == 401, (alg, r.text)
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="tokenward", error="invalid_token"')
        assert all(" " <= c <= "~" for c in challenge)
        assert "x-injected" not in {k.lower() for k in r.headers}
        assert r.json()["error"] == "invalid_token"  # the JSON body keeps the description


# -- F6: an unexpected error's log printed every frame's locals (password, bearer token) --------


def test_f6_unhandled_error_log_has_no_traceback_locals(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import structlog

    structlog.reset_defaults()  # an application that configures no logging (the dev renderer)

    async def broken(username: str) -> None:
        raise RuntimeError("driver bug")

    monkeypatch.setattr(server.store, "get_user", broken)
    password = "pw-" + secrets.token_hex(12)  # in no source line a traceback shows
    capsys.readouterr()
    r = server.password(password=password)
    assert r.status_code == 500
    assert r.json() == {"error": "server_error", "error_description": "internal error"}
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "unhandled_error" in logged and "driver bug" in logged  # the traceback is there
    assert password not in logged  # but not the locals holding the form


# -- F7: personal data (sessions with IPs and user agents, user info) was cacheable ------------


def test_f7_personal_data_answers_are_no_store(server: Server) -> None:
    user = server.login()
    admin = server.login(username="root", password="admin password 1", scope="admin")
    for path, token in [
        ("/userinfo", user["access_token"]),
        ("/sessions", user["access_token"]),
        ("/admin/users", admin["access_token"]),
        ("/admin/clients", admin["access_token"]),
        ("/admin/subjects/alice/sessions", admin["access_token"]),
    ]:
        r = server.http.get(path, headers=bearer(token))
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store", path
        assert r.headers["pragma"] == "no-cache", path


# -- checked and fine: pinned so they stay that way ---------------------------------------------


def test_fine_x_forwarded_for_does_not_reset_the_per_ip_limit(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(login_limit_per_ip="3/minute")
    for i in range(3):
        r = server.http.post(
            "/token",
            data={"grant_type": "password", "username": f"u{i}", "password": "x",
                  "client_id": "app"},
            headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}"},
        )  # fmt: skip
        assert r.status_code == 400
    spoofed = server.http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": ALICE_PW,
              "client_id": "app"},
        headers={"X-Forwarded-For": "192.0.2.77"},
    )  # fmt: skip
    assert spoofed.status_code == 429


def test_fine_username_case_variants_are_one_account_space_variants_are_not(
    server: Server,
) -> None:
    """Usernames are compared after NFKC + case folding (F16): case and full-width variants
    are alice; names with spaces break the username rule and are nobody."""
    for variant in ("Alice", "ALICE", "\uff41lice"):
        assert server.password(username=variant).status_code == 200, variant
    for variant in (" alice", "alice ", "alice\t"):
        r = server.password(username=variant)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", variant

"""RP-initiated logout, back-channel logout tokens and the outbound delivery component."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from authlib.jose import JsonWebKey, JsonWebToken

from support.authz import open_api
from support.oauth import Flow, hidden, jwt_claims, jwt_header, redirect_params
from support.server import ADMIN_PW, Server, bearer
from tokenward.clock import FrozenClock
from tokenward.server.outbox import (
    KIND,
    MAX_ATTEMPTS,
    OutboundRefused,
    Outbox,
    check_target,
)
from tokenward.store.memory import MemoryStore

RP = "rp"
RP_CB = "https://rp.example/cb"
RP_BYE = "https://rp.example/bye"
BCL = "http://127.0.0.1:9/bcl"


@pytest.fixture
def srv(server_factory: Callable[..., Server]) -> tuple[Server, list[httpx.Request]]:
    server = server_factory(outbound_allow_private=True)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    server.runtime.outbox._transport = httpx.MockTransport(handler)

    async def go() -> None:
        # the tests deliver with deliver_due themselves: the server's delivery loop would
        # race them for each delivery (a claimed one is skipped) and make them flaky
        for task in server.runtime._tasks:
            if task.get_name() == "tokenward-outbox":
                task.cancel()
        await server.runtime.clients.create(
            RP,
            public=True,
            grants=("authorization_code", "refresh_token"),
            redirect_uris=(RP_CB,),
            post_logout_redirect_uris=(RP_BYE,),
            backchannel_logout_uri=BCL,
            first_party=True,
        )
        await open_api(
            server.runtime, users=["alice"], clients=[RP], extra_client_scopes=["openid", "profile"]
        )

    server.run(go)
    return server, seen


def _tokens(server: Server) -> tuple[Flow, dict[str, Any]]:
    f = Flow(server, client_id=RP, redirect_uri=RP_CB)
    body: dict[str, Any] = f.exchange(f.code()).json()
    return f, body


def _logout_tokens(server: Server, seen: list[httpx.Request]) -> list[str]:
    server.run(server.runtime.outbox.deliver_due)
    return [parse_qs(r.content.decode())["logout_token"][0] for r in seen]


def test_rp_initiated_logout_with_hint_redirects_ends_session_and_sends_logout_token(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    f, body = _tokens(server)
    sid = jwt_claims(body["id_token"])["sid"]
    r = server.http.get(
        "/end_session",
        params={
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": RP_BYE,
            "state": "s1",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"{RP_BYE}?state=s1"
    # the sign-in session ended: prompt=none cannot mint tokens; its refresh family is revoked
    assert redirect_params(f.authorize(prompt="none").headers["location"])["error"] == (
        "login_required"
    )
    assert server.refresh(body["refresh_token"], client_id=RP).status_code == 400
    (token,) = _logout_tokens(server, seen)
    assert seen[0].url == BCL
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    header, claims = jwt_header(token), jwt_claims(token)
    assert header["typ"] == "logout+jwt" and header["alg"] == "RS256"
    assert claims["sid"] == sid and claims["aud"] == RP and claims["sub"] == "alice"
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    assert "nonce" not in claims and claims["jti"]
    jwks = JsonWebKey.import_key_set(server.http.get("/.well-known/jwks.json").json())
    JsonWebToken(["RS256"]).decode(token, jwks).validate(now=claims["iat"])
    assert server.http.get("/userinfo", headers=bearer(token)).status_code == 401


def test_unregistered_post_logout_redirect_uri_is_a_page_not_a_redirect(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, _ = srv
    _, body = _tokens(server)
    r = server.http.get(
        "/end_session",
        params={"id_token_hint": body["id_token"], "post_logout_redirect_uri": "https://evil/x"},
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_logout_without_hint_asks_for_confirmation_with_csrf(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    f, _ = _tokens(server)
    page = server.http.get("/end_session").text
    assert 'name="csrf_token"' in page
    bad = server.http.post("/end_session", data={"request_id": hidden(page, "request_id")})
    # without csrf_token the POST is just another confirmation page: nothing ends
    assert bad.status_code == 200 and 'name="csrf_token"' in bad.text
    assert f.authorize(prompt="none").status_code == 302
    wrong = server.http.post(
        "/end_session", data={"request_id": hidden(page, "request_id"), "csrf_token": "x"}
    )
    assert wrong.status_code == 403
    ok = server.http.post(
        "/end_session",
        data={"request_id": hidden(page, "request_id"), "csrf_token": hidden(page, "csrf_token")},
    )
    assert ok.status_code == 200 and "signed out" in ok.text
    assert redirect_params(f.authorize(prompt="none").headers["location"])["error"] == (
        "login_required"
    )
    assert len(_logout_tokens(server, seen)) == 1


def test_logout_everywhere_sends_back_channel_logout(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    _, body = _tokens(server)
    assert server.http.post("/logout-all", headers=bearer(body["access_token"])).status_code == 200
    (token,) = _logout_tokens(server, seen)
    assert jwt_claims(token)["sid"] == jwt_claims(body["id_token"])["sid"]


def test_back_channel_goes_only_to_clients_issued_tokens_in_the_session(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv

    async def other() -> None:
        await server.runtime.clients.create(
            "idle",
            public=True,
            grants=("authorization_code",),
            redirect_uris=("https://idle.example/cb",),
            backchannel_logout_uri="http://127.0.0.1:9/idle",
        )
        await open_api(server.runtime, clients=["idle"], extra_client_scopes=["openid"])

    server.run(other)
    _, body = _tokens(server)
    server.http.post("/logout-all", headers=bearer(body["access_token"]))
    _logout_tokens(server, seen)
    assert [str(r.url) for r in seen] == [BCL]


# -- the outbound delivery component ---------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x",
     "https://169.254.169.254/latest", "https://localhost/x", "ftp://example.com/x",
     "https://user:pw@example.com/x"],
)  # fmt: skip
def test_outbound_policy_refuses_http_and_private_targets(url: str) -> None:
    with pytest.raises(OutboundRefused):
        check_target(url, allow_private=False, resolve=False)


def test_outbound_policy_allows_private_and_http_to_them_only_when_enabled() -> None:
    check_target("http://127.0.0.1:8080/bcl", allow_private=True, resolve=False)
    check_target("https://10.1.2.3/x", allow_private=True, resolve=False)
    check_target("https://93.184.216.34/x", allow_private=False, resolve=False)
    with pytest.raises(OutboundRefused):  # plain http to a public host stays refused
        check_target("http://93.184.216.34/x", allow_private=True, resolve=False)


class _Clock(FrozenClock):
    @property
    def t(self) -> float:
        return self.now()

    @t.setter
    def t(self, value: float) -> None:
        self.set(value)


async def test_outbox_retries_with_backoff_then_gives_up() -> None:
    store, clock = MemoryStore(), _Clock()
    calls: list[float] = []

    def fail(request: httpx.Request) -> httpx.Response:
        calls.append(clock.t)
        return httpx.Response(500)

    box = Outbox(store, clock=clock, allow_private=True, transport=httpx.MockTransport(fail))
    assert await box.enqueue("http://127.0.0.1/x", b"a=b", "text/plain", kind="test")
    for _ in range(200):  # walk the clock through the backoff schedule
        await box.deliver_due()
        clock.t += 1
    assert len(calls) == MAX_ATTEMPTS
    gaps = [round(b - a) for a, b in itertools.pairwise(calls)]
    assert gaps == sorted(gaps) and gaps[0] == 1 and gaps[-1] >= 64  # exponential
    assert await store.list_records(KIND, "pending", now=clock.t) == []  # bounded: dropped


async def test_outbox_delivers_once_and_forgets() -> None:
    store, clock = MemoryStore(), _Clock()
    got: list[bytes] = []

    def ok(request: httpx.Request) -> httpx.Response:
        got.append(request.content)
        return httpx.Response(204)

    box = Outbox(store, clock=clock, allow_private=True, transport=httpx.MockTransport(ok))
    await box.enqueue(
        "http://127.0.0.1/x", b"logout_token=t", "application/x-www-form-urlencoded", kind="t"
    )
    assert await box.deliver_due() == 1
    assert await box.deliver_due() == 0
    assert got == [b"logout_token=t"]


async def test_outbox_refuses_a_private_target_when_not_allowed() -> None:
    box = Outbox(MemoryStore(), clock=_Clock(), allow_private=False)
    assert not await box.enqueue("https://127.0.0.1/x", b"", "text/plain", kind="t")
    assert await box.pending() == []


async def test_outbox_does_not_follow_redirects() -> None:
    store, clock = MemoryStore(), _Clock()
    urls: list[str] = []

    def redirect(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://127.0.0.1/elsewhere"})

    box = Outbox(store, clock=clock, allow_private=True, transport=httpx.MockTransport(redirect))
    await box.enqueue("http://127.0.0.1/x", b"", "text/plain", kind="t")
    assert await box.deliver_due() == 0  # a redirect is a failure, never followed
    assert urls == ["http://127.0.0.1/x"]


def test_refresh_token_reuse_sends_back_channel_logout(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    _, body = _tokens(server)
    server.runtime.sessions.grace_period = 0  # a replay is reuse at once
    first = server.refresh(body["refresh_token"], client_id=RP)
    assert first.status_code == 200
    reused = server.refresh(body["refresh_token"], client_id=RP)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    (token,) = _logout_tokens(server, seen)
    assert jwt_claims(token)["sid"] == jwt_claims(body["id_token"])["sid"]
    assert jwt_claims(token)["aud"] == RP


def test_logout_of_one_session_sends_back_channel_logout(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    _, body = _tokens(server)
    r = server.http.post("/logout", headers=bearer(body["access_token"]))
    assert r.status_code == 200 and r.json()["sessions_revoked"] == 1
    (token,) = _logout_tokens(server, seen)
    assert jwt_claims(token)["sid"] == jwt_claims(body["id_token"])["sid"]
    assert jwt_claims(token)["aud"] == RP


def test_revoking_one_session_sends_back_channel_logout_user_and_admin(
    srv: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = srv
    _, first = _tokens(server)
    family = jwt_claims(first["access_token"])["sid"]
    r = server.http.delete(f"/sessions/{family}", headers=bearer(first["access_token"]))
    assert r.status_code == 204
    (token,) = _logout_tokens(server, seen)
    assert jwt_claims(token)["sid"] == jwt_claims(first["id_token"])["sid"]

    seen.clear()
    _, second = _tokens(server)
    admin = server.login(username="root", password=ADMIN_PW, scope="admin")
    family = jwt_claims(second["access_token"])["sid"]
    r = server.http.delete(f"/admin/sessions/{family}", headers=bearer(admin["access_token"]))
    assert r.status_code == 204
    (token,) = _logout_tokens(server, seen)
    assert jwt_claims(token)["sid"] == jwt_claims(second["id_token"])["sid"]
    # a session already ended sends nothing more
    r = server.http.delete(f"/admin/sessions/{family}", headers=bearer(admin["access_token"]))
    assert r.status_code == 404
    assert len(_logout_tokens(server, seen)) == 1

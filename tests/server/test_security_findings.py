"""Regression tests for the second security review (``docs/security.md``, "Review findings",
F8 onwards). Each test is named after its finding and fails on the code before the fix."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.env import service_missing
from support.serve import free_port, serve
from support.server import ADMIN_PW as ADMIN_PASSWORD
from support.server import ALICE_PW, PEER, Server, bearer
from tokenward.errors import StoreUnavailable
from tokenward.feed import RevocationKind
from tokenward.server.addresses import address_prefix, client_address, parse_trusted_proxies

ADMIN_PW = "first-start-password"  # the live server's admin


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``tokenward serve`` over a real socket on SQLite (uvicorn's own behaviour matters here):
    3 failed logins a minute per IP, a 1 s header timeout."""
    cwd = tmp_path_factory.mktemp("live")
    port = free_port()
    settings = {
        "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
        "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "3/minute",
        "TOKENWARD_HEADER_TIMEOUT": "1",
    }
    with serve(settings, cwd=cwd, port=port) as served:
        yield served.base, cwd


def _stream_post(
    server: Server, path: str, body: AsyncIterator[bytes], ctype: str
) -> httpx.Response:
    """POST a body that arrives chunk by chunk (no ``Content-Length``: chunked framing)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=server.http.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            return await c.post(path, content=body, headers={"Content-Type": ctype})

    return server.run(go)


# -- F10: a chunked request body had no size limit ------------------------------------------------


def test_f10_chunked_body_past_the_limit_is_413_and_not_read_to_the_end(server: Server) -> None:
    """No ``Content-Length``: the body arrives chunked. Before the fix every chunk was read
    (buffered in memory) and the answer was a validation error; now the body is cut off at the
    limit (64 KiB) and the rest is never read."""
    chunks_read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(64):  # 4 MiB in 64 KiB chunks
            chunks_read += 1
            yield b"x" * 65536

    r = _stream_post(server, "/login", body(), "application/json")
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "invalid_request"
    assert chunks_read < 4


def test_f10_chunked_body_within_the_limit_still_works(server: Server) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"username": "alice", '
        yield b'"password": "correct horse battery"}'

    r = _stream_post(server, "/login", body(), "application/json")
    assert r.status_code == 200, r.text


def test_f10_chunked_form_past_the_limit_is_413(server_factory: Callable[..., Server]) -> None:
    server = server_factory()

    async def body() -> AsyncIterator[bytes]:
        yield b"grant_type=password&username=alice&password="
        for _ in range(8):
            yield b"x" * 16384

    r = _stream_post(server, "/token", body(), "application/x-www-form-urlencoded")
    assert r.status_code == 413, r.text


# -- F11: X-Forwarded-For was believed from loopback ---------------------------------------------


def _failed_login(server: Server, xff: str | None, user: str = "nobody") -> int:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    r = server.http.post(
        "/token",
        data={"grant_type": "password", "username": user, "password": "x", "client_id": "app"},
        headers=headers,
    )
    return r.status_code


def test_f11_x_forwarded_for_is_ignored_without_trusted_proxies(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(login_limit_per_ip="3/minute")
    statuses = [_failed_login(server, f"203.0.113.{i}", f"u{i}") for i in range(5)]
    assert statuses == [400, 400, 400, 429, 429]


def test_f11_x_forwarded_for_from_loopback_does_not_reset_the_per_ip_limit(
    live: tuple[str, Path],
) -> None:
    """Over a real socket from 127.0.0.1: uvicorn believed X-Forwarded-For from loopback, so
    every failed login came from a "new" address and none was throttled."""
    base, _ = live
    statuses = []
    for i in range(5):
        r = httpx.post(
            f"{base}/token",
            data={"grant_type": "password", "username": f"u{i}", "password": "x",
                  "client_id": "tokenward-console"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )  # fmt: skip
        statuses.append(r.status_code)
    assert statuses == [400, 400, 400, 429, 429]
    r = httpx.post(f"{base}/login", json={"username": "admin", "password": ADMIN_PW})
    assert r.status_code == 429  # the socket address's budget is spent, whatever XFF says


def test_f11_trusted_proxy_gives_the_rightmost_untrusted_hop(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(login_limit_per_ip="2/minute", trusted_proxies=f"{PEER}, 10.0.0.0/8")
    # the client wrote a fake left entry; the proxies appended the real 198.51.100.7
    for i in range(2):
        assert _failed_login(server, f"1.2.3.{i}, 198.51.100.7, 10.1.2.3", f"u{i}") == 400
    assert _failed_login(server, "9.9.9.9, 198.51.100.7", "u9") == 429
    assert _failed_login(server, "198.51.100.8", "u8") == 400  # another client is not throttled


def test_f11_stored_session_ip_is_always_a_parsed_address(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(trusted_proxies=PEER)
    token = server.login(**{"device": "x"})["access_token"]
    r = server.http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": ALICE_PW,
              "client_id": "app"},
        headers={"X-Forwarded-For": "<script>" + "A" * 4000},
    )  # fmt: skip
    assert r.status_code == 200
    sessions = server.http.get("/sessions", headers={"Authorization": f"Bearer {token}"}).json()
    assert {s["ip"] for s in sessions} == {PEER}


def test_f11_client_address_rules() -> None:
    proxies = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, fd00::/8")
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"
    assert client_address("192.0.2.1", ["203.0.113.9"], proxies) == "192.0.2.1"
    assert client_address("127.0.0.1", ["203.0.113.9, 10.0.0.2"], proxies) == "203.0.113.9"
    assert client_address("127.0.0.1", ["6.6.6.6", "203.0.113.9"], proxies) == "203.0.113.9"
    assert client_address("127.0.0.1", ["10.0.0.3"], proxies) == "10.0.0.3"  # all trusted
    assert client_address("127.0.0.1", ["junk, 10.0.0.2"], proxies) == "10.0.0.2"
    assert client_address("127.0.0.1", [], proxies) == "127.0.0.1"
    assert client_address("::ffff:10.0.0.1", ["2001:db8::1"], proxies) == "2001:db8::1"
    assert client_address("testclient", ["203.0.113.9"], proxies) is None
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        parse_trusted_proxies("10.0.0.1/8")


def test_f11_address_prefix_is_the_configured_network() -> None:
    assert address_prefix("203.0.113.77") == "203.0.113.0/24"
    assert address_prefix("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert address_prefix("203.0.113.77", 16, 48) == "203.0.0.0/16"


# -- F13: a leeway above 30 s brought revoked tokens back ------------------------------------------


@pytest.mark.parametrize("how", ["logout", "revoke_jti"])
def test_f13_revoked_token_stays_revoked_for_the_whole_leeway(
    server_factory: Callable[..., Server], how: str
) -> None:
    """With ``TOKENWARD_LEEWAY=120`` a token is accepted until ``exp + 120``; its revocation
    entry was dropped at ``exp + 30`` (the default margin), so 37 s after expiry a logged-out
    token was ``active: true`` again."""
    server = server_factory(leeway=120.0, access_token_ttl=60)
    tok = server.login()
    at = tok["access_token"]
    if how == "logout":
        assert server.http.post("/logout", headers=bearer(at)).status_code == 200
    else:
        r = server.http.post("/revoke", data={"token": at, "client_id": "app"})
        assert r.status_code == 200, r.text
    server.clock.advance(60 + 37)
    server.runtime.sessions.denylist.sweep()  # what the follower does every step
    r = server.http.post("/introspect", data={"token": at}, headers=server.svc())
    assert r.json() == {"active": False}
    assert server.http.get("/userinfo", headers=bearer(at)).status_code == 401


# -- F15: a NUL in a text field was a 500 on PostgreSQL, logged with the SQL parameters ------------


def _admin(server: Server) -> dict[str, str]:
    tok = server.login(username="root", password=ADMIN_PASSWORD, scope="admin")
    return bearer(tok["access_token"])


def test_f15_nul_or_lone_surrogate_in_any_text_field_is_400(server: Server) -> None:
    """Every text field is checked at the edge: before the fix these reached the store (on
    PostgreSQL a 500 whose log carried the statement's parameters)."""
    admin = _admin(server)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        server.http.post(
            "/login", json={"username": "alice", "password": ALICE_PW, "device": "a\x00"}
        ),
        server.http.post(
            "/login",
            content=b'{"username": "alice", "password": "p\\ud800"}',
            headers={"Content-Type": "application/json"},
        ),
        server.http.post(
            "/admin/clients", json={"client_id": "c1", "name": "n\x00"}, headers=admin
        ),
        server.http.post(
            "/admin/clients", json={"client_id": "c2", "scopes": ["a\x00"]}, headers=admin
        ),
        server.http.post(
            "/admin/users", json={"username": "bob", "password": "x\x00yyyyyyy"}, headers=admin
        ),
        server.password(scope="read\x00"),
        server.http.post(
            "/token",
            content=b"grant_type=password&username=alice&password=x&client_id=app&x%00=1",
            headers=form,
        ),
        server.http.get("/revocations?after=0%00", headers=server.svc()),
    ]
    for i, r in enumerate(cases):
        assert r.status_code == 400, (i, r.text)
        assert r.json()["error"] == "invalid_request", (i, r.text)
    names = [c["client_id"] for c in server.http.get("/admin/clients", headers=admin).json()]
    assert "c1" not in names and "c2" not in names


def test_f15_sql_engines_never_carry_statement_parameters(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from tokenward.store.sql.engine import postgres_engine, sqlite_engine

    lite = sqlite_engine(
        make_url(f"sqlite:///{tmp_path}/x.db"), timeout=1, memory=False, pool=(1, 0)
    )
    pg = postgres_engine(
        make_url("postgresql://u@127.0.0.1/db"), timeout=1, schema=None, pool=(1, 0)
    )
    assert lite.sync_engine.hide_parameters and pg.sync_engine.hide_parameters


# -- F19: SQLite database files were created world-readable ----------------------------------------


def test_f19_sqlite_files_are_created_owner_only(live: tuple[str, Path]) -> None:
    """``tokenward serve`` on a fresh SQLite path (umask 022): the database and its WAL files."""
    _, cwd = live
    files = [p for p in (cwd / "var").iterdir() if p.name.startswith("tokenward.db")]
    assert any(p.name == "tokenward.db" for p in files)
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o600, (p.name, oct(p.stat().st_mode))


def test_f19_existing_world_readable_sqlite_files_are_tightened(tmp_path: Path) -> None:
    from tokenward.store.sql.engine import private_sqlite_file

    db = tmp_path / "t.db"
    db.write_bytes(b"")
    Path(f"{db}-wal").write_bytes(b"")
    db.chmod(0o644)
    Path(f"{db}-wal").chmod(0o664)
    private_sqlite_file(db)
    assert db.stat().st_mode & 0o777 == 0o600
    assert Path(f"{db}-wal").stat().st_mode & 0o777 == 0o600


# -- F17: a store hiccup as an SSE stream started was an unhandled 500 and a torn response ---------


def test_f17_store_failure_at_sse_start_is_503(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: object, **__: object) -> int:
        raise StoreUnavailable("store unavailable (OSError)")

    monkeypatch.setattr(server.store, "revocation_cursor", down)
    r = server.http.get("/revocations", headers={**server.svc(), "Accept": "text/event-stream"})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert "retry-after" in r.headers


def test_f17_store_failure_during_sse_is_an_error_event(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: object, **__: object) -> list[object]:
        raise StoreUnavailable("store unavailable (OSError)")

    monkeypatch.setattr(server.store, "wait_revocations", down)
    with server.http.stream(
        "GET", "/revocations", headers={**server.svc(), "Accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert text.startswith("event: ready\n")
    assert text.endswith("event: error\ndata: store unavailable\n\n")


# -- F18: no request-header read timeout (slowloris) -----------------------------------------------


def _drip_until_closed(sock: socket.socket, first: bytes, drips: int) -> bool:
    """Send ``first``, then one header byte every 0.25 s; True when the server closed the
    connection before the drips ran out."""
    sock.sendall(first)
    for _ in range(drips):
        time.sleep(0.25)
        try:
            sock.sendall(b"x")
            sock.settimeout(0.01)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset: closed
            return True
    return False


def test_f18_slow_header_sender_is_disconnected(live: tuple[str, Path]) -> None:
    """Headers dripped a byte at a time: before the fix uvicorn held the connection for as
    long as the client kept dripping (there was no header timeout)."""
    host, port = live[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        assert _drip_until_closed(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", 40)


def test_f18_slow_second_request_on_a_kept_alive_connection_is_disconnected(
    live: tuple[str, Path],
) -> None:
    host, port = live[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert _drip_until_closed(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: ", 40)


def test_f18_slow_client_settings_reach_uvicorn() -> None:
    from tokenward.server.http import HeaderTimeoutProtocol, serve_options
    from tokenward.server.settings import Settings

    opts = serve_options(
        Settings(header_timeout=3, keep_alive_timeout=4, max_connections=50)  # type: ignore[call-arg]
    )
    assert opts["http"] is HeaderTimeoutProtocol and HeaderTimeoutProtocol.header_timeout == 3
    assert opts["timeout_keep_alive"] == 4 and opts["limit_concurrency"] == 50
    assert opts["proxy_headers"] is False


# -- F8: disabling a user or resetting their password did not reliably end their sessions ---------


async def _disable(rt: Any) -> None:  # what POST /admin/users/{name}/disable does
    await rt.users.set_disabled("alice", True)
    await rt.sessions.revoke_subject("alice")


async def _reset(rt: Any) -> None:  # what POST /admin/users/{name}/password does
    await rt.users.set_password("alice", "a brand new password")
    await rt.sessions.revoke_subject("alice")


def _assert_no_live_session(server: Server, r: httpx.Response) -> None:
    """Whatever the racing login answered, nothing it got may still work."""
    if r.status_code == 200:
        tok = r.json()
        assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
        assert server.refresh(tok["refresh_token"]).status_code == 400
        info = server.http.post(
            "/introspect", data={"token": tok["access_token"]}, headers=server.svc()
        )
        assert info.json() == {"active": False}
    else:
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    live = server.run(server.store.list_families, "alice")
    assert live == []


@pytest.mark.parametrize("change", [_disable, _reset], ids=["disable", "reset"])
@pytest.mark.parametrize("order", ["before_the_family_exists", "after_the_family_exists"])
def test_f8_credential_change_racing_a_login_ends_its_session(
    server: Server, monkeypatch: pytest.MonkeyPatch, change: Any, order: str
) -> None:
    """The login has passed its password check; the admin's change lands just before, or just
    after, the login creates its family. Before the fix the first order left a session that
    refreshed for its whole absolute lifetime (its family was created after revoke_subject)."""
    original = server.store.create_family

    async def racing(*args: Any, **kw: Any) -> Any:
        if order == "before_the_family_exists":
            await change(server.runtime)
            return await original(*args, **kw)
        out = await original(*args, **kw)
        await change(server.runtime)
        return out

    monkeypatch.setattr(server.store, "create_family", racing)
    r = server.password()
    monkeypatch.setattr(server.store, "create_family", original)
    _assert_no_live_session(server, r)


@pytest.mark.parametrize("change", [_disable, _reset], ids=["disable", "reset"])
def test_f8_concurrent_logins_leave_no_session_after_a_credential_change(
    server: Server, change: Any
) -> None:
    """Six login loops for the victim while the admin acts (the review's attack). The password
    check takes 20 ms here, as argon2 does for real, so logins are in flight at the change."""
    app = server.http.app
    stop = asyncio.Event()
    verify = server.runtime.users._verify

    async def slow_verify(password_hash: str, password: str) -> bool:
        ok = await verify(password_hash, password)
        await asyncio.sleep(0.02)
        return ok

    server.runtime.users._verify = slow_verify  # type: ignore[method-assign]

    async def attack() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            got: list[httpx.Response] = []
            signed_in = asyncio.Event()
            after_change: list[int] = []

            async def loop() -> None:
                while not stop.is_set():
                    r = await c.post(
                        "/login",
                        json={"username": "alice", "password": ALICE_PW, "client_id": "app"},
                    )
                    got.append(r)
                    if r.status_code == 200:
                        signed_in.set()
                    if changed.is_set():
                        after_change.append(r.status_code)
                        if len(after_change) >= 6:  # the loops went on after the change
                            stop.set()
                    await asyncio.sleep(0.005)  # paced: six clients, not a busy loop

            changed = asyncio.Event()
            tasks = [asyncio.create_task(loop()) for _ in range(6)]
            await signed_in.wait()  # the loops are logging in
            await change(server.runtime)
            changed.set()
            stop.set()
            await asyncio.gather(*tasks)
            return got

    responses = server.run(attack)
    assert any(r.status_code == 200 for r in responses)  # the loops did log in before
    assert server.run(server.store.list_families, "alice") == []


def test_f8_refresh_of_a_session_older_than_the_credential_change_is_refused(
    server: Server,
) -> None:
    """A family that escaped revoke_subject (here: its revocation is undone in the store) is
    still refused at its next refresh: the refresh re-reads the user."""
    tok = server.login()
    server.run(server.runtime.users.set_disabled, "alice", True)
    r = server.refresh(tok["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    server.run(server.runtime.users.set_disabled, "alice", False)
    assert server.refresh(tok["refresh_token"]).status_code == 400  # revoked by the refusal


def test_f8_credential_watermark_api() -> None:
    from tokenward.server.credentials import bump, credential_version, session_refusal
    from tokenward.store.base import User

    u = User("alice", "h", created_at=1.0)
    assert credential_version(u) == 0 and session_refusal(u, seen_version=0) is None
    v = bump(u, 100.0)
    assert credential_version(v) == 1
    assert session_refusal(v, seen_version=0) == "credentials changed"
    assert session_refusal(v, created_at=99.0) == "credentials changed"
    assert session_refusal(v, created_at=100.0) is None
    assert session_refusal(None) == "no such user"


# -- F9: on Redis, ~16 feed streams from one client denied the feed to everyone ------------------


@pytest.fixture
def redis_server(server_factory: Callable[..., Server]) -> Iterator[Server]:
    from support.env import service_missing
    from support.stores import REDIS_URL, delete_redis_prefix, redis_problem
    from tokenward.store import store_from_url

    if (problem := redis_problem()) is not None:
        service_missing(problem)
    prefix = "twtestfeed" + secrets.token_hex(4)
    store = store_from_url(REDIS_URL, prefix=prefix, timeout=2.0)
    try:
        yield server_factory(store=store, feed_max_streams_per_client=200, feed_max_streams=400)
    finally:
        delete_redis_prefix(prefix)


def _long_polls(server: Server, n: int, wait: float) -> list[httpx.Response]:
    """``n`` concurrent long-polls from the svc client; once they are all waiting, one
    revocation is made."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=server.http.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="https://testserver", timeout=30
        ) as c:
            head = await server.store.revocation_cursor()
            polls = [
                asyncio.create_task(
                    c.get(f"/revocations?after={head}&wait={wait}", headers=server.svc())
                )
                for _ in range(n)
            ]
            await asyncio.sleep(0.5)  # every poll is waiting now
            await server.runtime.sessions.revoke_access_token("jti-x", exp=2_000_000_000)
            return list(await asyncio.gather(*polls))

    return server.run(go)


def test_f9_many_feed_waiters_on_redis_do_not_exhaust_the_blocking_pool(
    redis_server: Server,
) -> None:
    """40 long-polls (the blocking pool has 16 connections): before the fix each held one
    connection and the rest got 503; now one follower serves them all."""
    rs = _long_polls(redis_server, 40, 10)
    assert [r.status_code for r in rs] == [200] * 40
    assert all([e["value"] for e in r.json()["events"]] == ["jti-x"] for r in rs)


def test_f9_fanout_holds_one_store_waiter_for_many_subscribers() -> None:
    """Memory store, counting calls: 50 waiters, one ``wait_revocations`` caller."""
    from tokenward.store.fanout import FeedFanout
    from tokenward.store.memory import MemoryStore

    async def go() -> tuple[int, list[list[str]]]:
        store = MemoryStore()
        await store.open()
        inner = store.wait_revocations
        concurrent = peak = 0

        async def counting(*a: Any, **kw: Any) -> Any:
            nonlocal concurrent, peak
            concurrent += 1
            peak = max(peak, concurrent)
            try:
                return await inner(*a, **kw)
            finally:
                concurrent -= 1

        store.wait_revocations = counting  # type: ignore[method-assign]
        fan = FeedFanout(store)
        waits = [
            asyncio.create_task(fan.wait_revocations(0, now=lambda: 1.0, timeout=5))
            for _ in range(50)
        ]
        await asyncio.sleep(0.1)
        await store.add_revocation(RevocationKind.JTI, "j1", now=1.0, until=100.0)
        got = await asyncio.gather(*waits)
        await fan.close()
        await store.close()
        return peak, [[e.value for e in evs] for evs in got]

    peak, got = asyncio.run(go())
    assert peak == 1
    assert got == [["j1"]] * 50


# -- F12: no cap on feed streams ----------------------------------------------------------------


def test_f12_feed_streams_beyond_the_per_client_cap_are_429(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(feed_max_streams_per_client=3, feed_max_streams=10)
    rs = _long_polls(server, 5, 5)
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200, 200, 429, 429]
    refused = next(r for r in rs if r.status_code == 429)
    assert refused.json()["error"] == "invalid_request" and int(refused.headers["retry-after"]) > 0
    # the slots are given back: the next long-poll is served
    r = server.http.get("/revocations?after=0&wait=0.01", headers=server.svc())
    assert r.status_code == 200


def test_f12_feed_streams_beyond_the_total_cap_are_429(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(feed_max_streams_per_client=10, feed_max_streams=2)
    codes = sorted(r.status_code for r in _long_polls(server, 4, 5))
    assert codes == [200, 200, 429, 429]


def test_f12_sse_stream_slot_is_released_when_the_stream_ends(
    server_factory: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(feed_max_streams_per_client=1)

    async def down(*_: object, **__: object) -> list[object]:
        raise StoreUnavailable("store unavailable (OSError)")

    monkeypatch.setattr(server.store, "wait_revocations", down)
    sse = {**server.svc(), "Accept": "text/event-stream"}
    for _ in range(3):  # each stream ends with event: error and frees its slot
        with server.http.stream("GET", "/revocations", headers=sse) as r:
            assert r.status_code == 200
            assert "".join(r.iter_text()).endswith("event: error\ndata: store unavailable\n\n")
    assert server.runtime.feed_streams.open == 0


# -- F20: anyone could lock a known account out with 5 wrong passwords a minute -------------------


def _login_from(server: Server, address: str, password: str) -> int:
    r = server.http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": password,
              "client_id": "app"},
        headers={"X-Forwarded-For": address},
    )  # fmt: skip
    return r.status_code


def test_f20_attacker_on_another_network_cannot_lock_the_owner_out(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(login_limit_per_account="3/minute", trusted_proxies=PEER)
    assert [_login_from(server, "203.0.113.9", "wrong") for _ in range(5)] == [400] * 3 + [429] * 2
    assert _login_from(server, "203.0.113.77", ALICE_PW) == 429  # the attacker's own /24
    assert _login_from(server, "198.51.100.7", ALICE_PW) == 200  # the owner, elsewhere


def test_f20_the_account_ceiling_bounds_guesses_from_every_network(
    server_factory: Callable[..., Server],
) -> None:
    """The trade-off: enough networks together do spend the (far higher) ceiling."""
    server = server_factory(
        login_limit_per_account="3/minute",
        login_limit_per_account_ceiling="6/minute",
        trusted_proxies=PEER,
    )
    for net in range(3):
        for _ in range(2):
            assert _login_from(server, f"203.0.{net}.1", "wrong") == 400
    assert _login_from(server, "198.51.100.7", ALICE_PW) == 429


# -- F14: a leaked client secret could not be revoked or rotated ----------------------------------


def _cc(server: Server, client_id: str, secret: str) -> int:
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        },
    )
    return r.status_code


def test_f14_disabling_a_client_refuses_it_and_ends_its_sessions(server: Server) -> None:
    admin = _admin(server)
    tok = server.login(client_id="svc", client_secret=server.svc_secret)
    r = server.http.post("/admin/clients/svc/disable", headers=admin)
    assert r.status_code == 200 and r.json() == {"sessions_revoked": 1}
    assert _cc(server, "svc", server.svc_secret) == 401
    assert (
        server.refresh(
            tok["refresh_token"], client_id="svc", client_secret=server.svc_secret
        ).status_code
        == 401
    )
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    listed = {c["client_id"]: c for c in server.http.get("/admin/clients", headers=admin).json()}
    assert listed["svc"]["disabled"] is True
    assert server.http.post("/admin/clients/svc/enable", headers=admin).status_code == 200
    assert _cc(server, "svc", server.svc_secret) == 200
    assert server.http.post("/admin/clients/nope/disable", headers=admin).status_code == 404
    # a public client too: its logins are refused while it is disabled
    server.http.post("/admin/clients/app/disable", headers=admin)
    assert server.password().status_code == 401


@pytest.mark.parametrize("overlap", [0, 3600])
def test_f14_rotated_secret_replaces_the_old_one_after_the_overlap(
    server: Server, overlap: int
) -> None:
    admin = _admin(server)
    r = server.http.post(
        "/admin/clients/svc/rotate-secret", json={"overlap": overlap}, headers=admin
    )
    assert r.status_code == 200, r.text
    new = r.json()["client_secret"]
    assert r.headers["cache-control"] == "no-store"
    assert _cc(server, "svc", new) == 200
    assert _cc(server, "svc", server.svc_secret) == (200 if overlap else 401)
    public = server.http.post("/admin/clients/app/rotate-secret", json={}, headers=admin)
    assert public.status_code == 400
    server.clock.advance(overlap + 1)
    assert _cc(server, "svc", server.svc_secret) == 401
    assert _cc(server, "svc", new) == 200


def test_f14_removing_a_client_disables_it_ends_its_sessions_and_deletes_it(
    server: Server,
) -> None:
    admin = _admin(server)
    tok = server.login(client_id="svc", client_secret=server.svc_secret)
    r = server.http.delete("/admin/clients/svc", headers=admin)
    assert r.status_code == 200 and r.json() == {"sessions_revoked": 1}
    assert _cc(server, "svc", server.svc_secret) == 401
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401
    assert "svc" not in [
        c["client_id"] for c in server.http.get("/admin/clients", headers=admin).json()
    ]
    assert server.http.delete("/admin/clients/svc", headers=admin).status_code == 404
    console = server.http.delete(
        f"/admin/clients/{server.runtime.settings.console_client_id}", headers=admin
    )
    assert console.status_code == 400


def test_f14_client_cli_disable_enable_rotate_remove(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tokenward.cli import app

    url = f"sqlite:///{tmp_path}/tw.db"
    runner = CliRunner()
    add = runner.invoke(
        app, ["client", "add", "svc", "--grants", "client_credentials", "--store", url]
    )
    assert add.exit_code == 0, add.output
    assert runner.invoke(app, ["client", "disable", "svc", "--store", url]).exit_code == 0
    listed = runner.invoke(app, ["client", "list", "--store", url], terminal_width=200)
    assert "yes" in listed.output
    assert runner.invoke(app, ["client", "enable", "svc", "--store", url]).exit_code == 0
    rot = runner.invoke(app, ["client", "rotate-secret", "svc", "--overlap", "1h", "--store", url])
    assert rot.exit_code == 0 and "client_secret:" in rot.output and "1h" in rot.output
    bad = runner.invoke(
        app, ["client", "rotate-secret", "svc", "--overlap", "soon", "--store", url]
    )
    assert bad.exit_code == 2
    assert runner.invoke(app, ["client", "remove", "svc", "--store", url]).exit_code == 0
    assert "svc" not in runner.invoke(app, ["client", "list", "--store", url]).output
    missing = runner.invoke(app, ["client", "disable", "svc", "--store", url])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    console = runner.invoke(app, ["client", "remove", "tokenward-console", "--store", url])
    assert console.exit_code == 2


# -- F16: a username with "/" could be created but never administered -------------------------


def test_f16_usernames_outside_the_rule_are_refused_everywhere(
    server: Server, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tokenward.cli import app

    admin = _admin(server)
    for bad in ("a/b", "a b", "", "x" * 65, "semi;colon", "tab\t", "emoji\U0001f600"):
        r = server.http.post(
            "/admin/users", json={"username": bad, "password": "long password 1"}, headers=admin
        )
        assert r.status_code == 400, (bad, r.text)
    ok = server.http.post(
        "/admin/users",
        json={"username": "Zoë.Smith@example-1", "password": "long password 1"},
        headers=admin,
    )
    assert ok.status_code == 201 and ok.json()["username"] == "zoë.smith@example-1"
    cli = CliRunner().invoke(
        app,
        ["user", "add", "a/b", "--password-stdin", "--store", f"sqlite:///{tmp_path}/t.db"],
        input="long password 1\n",
    )
    assert cli.exit_code == 2 and "1-64 Unicode letters" in cli.output


def test_f16_names_are_compared_after_nfkc_and_case_folding(server: Server) -> None:
    admin = _admin(server)
    dup = server.http.post(
        "/admin/users", json={"username": "ALICE", "password": "long password 1"}, headers=admin
    )
    assert (dup.status_code, dup.json()["error"]) == (409, "already_exists")  # case-blind clash
    tok = server.login(username="ＡＬＩＣＥ")  # full-width: NFKC makes it ALICE, folding alice
    r = server.http.post("/admin/users/Alice/disable", headers=admin)
    assert r.status_code == 200 and r.json() == {"sessions_revoked": 1}
    assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 401


def test_f16_case_variants_share_one_login_budget(server_factory: Callable[..., Server]) -> None:
    server = server_factory(login_limit_per_account="3/minute")
    codes = [
        server.password(username=v, password="wrong").status_code
        for v in ("alice", "Alice", "ALICE", "aLiCe")
    ]
    assert codes == [400, 400, 400, 429]


def test_f16_legacy_colliding_names_keep_signing_in_by_exact_name_and_are_reported(
    server: Server,
) -> None:
    """Records from before the rule (written straight to the store): 'Bob' and 'bob' collide,
    'x/y' breaks the rule. Each signs in by its exact name; start-up lists them."""
    from tokenward.store.base import User

    async def seed() -> list[str]:
        h = await server.runtime.users._hash("legacy password 1")
        for name in ("Bob", "bob", "x/y"):
            await server.store.create_user(User(name, h, created_at=1.0))
        return await server.runtime._report_usernames()

    lines = server.run(seed)
    assert any("'x/y' breaks the rule" in line for line in lines)
    assert any("'Bob', 'bob'" in line for line in lines)
    for name in ("Bob", "bob", "x/y"):
        tok = server.login(username=name, password="legacy password 1", scope="openid")
        info = server.http.get("/userinfo", headers=bearer(tok["access_token"])).json()
        assert info["sub"] == name


# -- F21: with --workers N the in-memory login budgets were N times larger -------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_f21_worker_processes_share_one_login_budget(tmp_path: Path, backend: str) -> None:
    """Two workers = two throttles over two store connections to one database: failures
    alternate between them and the account's 3/minute still holds (was 3 per worker)."""
    from tokenward.errors import RateLimited
    from tokenward.server.ratelimit import LoginThrottle, storage_url_for
    from tokenward.store import store_from_url

    if backend == "sqlite":
        url, options = f"sqlite:///{tmp_path}/t.db", {}
    else:
        from support.stores import POSTGRES_URL, drop_postgres_schema, postgres_problem

        if (problem := postgres_problem()) is not None:
            service_missing(problem)
        url, options = POSTGRES_URL, {"schema": "tw_f21_" + secrets.token_hex(4)}

    async def go() -> list[str]:
        stores = [store_from_url(url, **options) for _ in range(2)]
        for s in stores:
            await s.open()
        throttles = [
            LoginThrottle(per_account="3/minute", storage_url=storage_url_for(url), store=s)
            for s in stores
        ]
        out = []
        for i in range(6):
            t = throttles[i % 2]
            try:
                await t.check("alice", "203.0.113.5")
            except RateLimited:
                out.append("429")
                continue
            await t.failed("alice", "203.0.113.5")
            out.append("400")
        for s in stores:
            await s.close()
        return out

    try:
        assert asyncio.run(go()) == ["400", "400", "400", "429", "429", "429"]
    finally:
        if backend == "postgresql":
            drop_postgres_schema(options["schema"])

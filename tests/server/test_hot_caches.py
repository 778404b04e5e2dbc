"""The hot paths' per-process caches (``tokenward.server.cache``): ``/userinfo`` and
``/introspect`` answer without a store read once the records are cached, and every change is
seen — at once when made through this instance, through the revocation feed for a revoked
(disabled) subject at another instance, within ``TOKENWARD_RECORD_CACHE_TTL`` for anything else
made elsewhere; ``/healthz`` and introspection share one store ping."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from support.server import ADMIN_PW, Server, basic, bearer
from tokenward.errors import StoreUnavailable
from tokenward.server.cache import RecordCache, StoreHealth
from tokenward.store import store_from_url

PROPAGATION = 10.0  # seconds another instance may take to follow the feed (SQLite polling)


class Counted:
    """Counts the calls of some store methods (on top of whatever wraps them already)."""

    def __init__(self, store: Any, *names: str) -> None:
        self.calls = dict.fromkeys(names, 0)
        for name in names:
            inner = getattr(store, name)

            async def counted(*args: Any, _name: str = name, _inner: Any = inner) -> Any:
                self.calls[_name] += 1
                return await _inner(*args)

            setattr(store, name, counted)

    def reset(self) -> None:
        self.calls = dict.fromkeys(self.calls, 0)


def _userinfo(server: Server, token: str) -> Any:
    return server.http.get("/userinfo", headers=bearer(token))


def _introspect(server: Server, token: str, auth: dict[str, str]) -> Any:
    return server.http.post("/introspect", data={"token": token}, headers=auth)


def _until(check: Callable[[], bool], bound: float = PROPAGATION) -> None:
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, "not within the propagation bound"
        time.sleep(0.05)


# -- one instance ---------------------------------------------------------------------------


def test_userinfo_reads_the_store_once_then_answers_from_the_cache(server: Server) -> None:
    tok = server.login()
    counted = Counted(server.store, "get_user", "get_client")
    for _ in range(3):
        r = _userinfo(server, tok["access_token"])
        assert r.status_code == 200 and r.json()["preferred_username"] == "alice"
    assert counted.calls == {"get_user": 1, "get_client": 1}


def test_a_change_made_here_is_seen_at_once(server: Server) -> None:
    tok = server.login()
    assert _userinfo(server, tok["access_token"]).json()["is_admin"] is False
    server.run(server.runtime.roles.set_user_roles, "alice", ["member", "admin"])
    assert _userinfo(server, tok["access_token"]).json()["is_admin"] is True

    async def rename() -> None:
        user = await server.store.get_user("alice")
        assert user is not None
        await server.store.update_user(replace(user, attributes={"name": "Alice A."}))

    server.run(rename)
    assert _userinfo(server, tok["access_token"]).json()["name"] == "Alice A."


def test_disabling_a_user_refuses_its_tokens_here_at_once(server: Server) -> None:
    tok = server.login()
    assert _userinfo(server, tok["access_token"]).status_code == 200
    assert "alice" in server.runtime.user_cache
    admin = server.login(username="root", password=ADMIN_PW, scope="admin")
    r = server.http.post("/admin/users/alice/disable", headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    r = _userinfo(server, tok["access_token"])
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert "alice" not in server.runtime.user_cache


def test_introspection_reads_no_store_once_the_client_is_cached(server: Server) -> None:
    tok = server.login()
    counted = Counted(server.store, "get_client", "ping", "get_user")
    for _ in range(3):
        r = _introspect(server, tok["access_token"], server.svc())
        assert r.status_code == 200 and r.json()["active"] is True
    # the client once; one ping vouches for the store (STORE_FRESHNESS of real time)
    assert counted.calls["get_client"] == 1 and counted.calls["get_user"] == 0
    assert counted.calls["ping"] <= 3


def test_a_secret_rotated_here_is_refused_at_once(server: Server) -> None:
    tok = server.login()
    assert _introspect(server, tok["access_token"], server.svc()).status_code == 200
    new = server.run(server.runtime.clients.rotate_secret, "svc")
    old = _introspect(server, tok["access_token"], server.svc())
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    assert _introspect(server, tok["access_token"], basic("svc", new)).json()["active"] is True
    # with an overlap the previous secret keeps working until it ends (token clock)
    newer = server.run(lambda: server.runtime.clients.rotate_secret("svc", overlap=60))
    assert _introspect(server, tok["access_token"], basic("svc", new)).status_code == 200
    server.clock.advance(61)
    assert _introspect(server, tok["access_token"], basic("svc", new)).status_code == 401
    assert _introspect(server, tok["access_token"], basic("svc", newer)).status_code == 200


def test_a_client_disabled_here_is_refused_at_once(server: Server) -> None:
    tok = server.login()
    assert _introspect(server, tok["access_token"], server.svc()).status_code == 200
    server.run(server.runtime.clients.set_disabled, "svc", True)
    assert _introspect(server, tok["access_token"], server.svc()).status_code == 401


# -- two instances on one SQLite database -------------------------------------------------


@pytest.fixture
def pair(server_factory: Callable[..., Server], tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    url = f"sqlite:///{tmp_path}/shared.db"
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    a = server_factory(store=store_from_url(url), key_encryption_key=kek)
    # b shares a's data (its set-up has run): the same keys, users and clients
    b = server_factory(store=store_from_url(url), key_encryption_key=kek, populate=False)
    b.svc_secret = a.svc_secret
    yield a, b


def test_a_user_disabled_elsewhere_is_refused_and_uncached_via_the_feed(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    tok = a.login()
    assert _userinfo(b, tok["access_token"]).status_code == 200
    assert "alice" in b.runtime.user_cache
    admin = a.login(username="root", password=ADMIN_PW, scope="admin")
    r = a.http.post("/admin/users/alice/disable", headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    assert _userinfo(a, tok["access_token"]).status_code == 401  # here: at once
    _until(lambda: _userinfo(b, tok["access_token"]).status_code == 401)
    _until(lambda: "alice" not in b.runtime.user_cache)  # the feed's subject event


def test_other_changes_made_elsewhere_are_seen_within_the_ttl(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    now = [1000.0]
    b.runtime.user_cache.timer = lambda: now[0]
    b.runtime.client_cache.timer = lambda: now[0]
    ttl = b.runtime.settings.record_cache_ttl
    assert ttl > 0
    tok = a.login()
    assert _userinfo(b, tok["access_token"]).json()["is_admin"] is False
    assert _introspect(b, tok["access_token"], b.svc()).status_code == 200
    a.run(a.runtime.roles.set_user_roles, "alice", ["member", "admin"])
    new = a.run(a.runtime.clients.rotate_secret, "svc")
    # b has not heard of either (no feed event): its records are at most `ttl` old
    assert _userinfo(b, tok["access_token"]).json()["is_admin"] is False
    assert _introspect(b, tok["access_token"], b.svc()).status_code == 200
    now[0] += ttl + 0.01
    assert _userinfo(b, tok["access_token"]).json()["is_admin"] is True
    assert _introspect(b, tok["access_token"], b.svc()).status_code == 401
    assert _introspect(b, tok["access_token"], basic("svc", new)).status_code == 200


def test_record_cache_ttl_zero_turns_the_cache_off(server_factory: Callable[..., Server]) -> None:
    server = server_factory(record_cache_ttl=0)
    tok = server.login()
    counted = Counted(server.store, "get_user")
    for _ in range(2):
        assert _userinfo(server, tok["access_token"]).status_code == 200
    assert counted.calls["get_user"] == 2


# -- the parts ------------------------------------------------------------------------------


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_record_cache_expires_bounds_and_caches_absence() -> None:
    now = [0.0]
    cache: RecordCache[str, int] = RecordCache(ttl=5, max_entries=2, timer=lambda: now[0])
    loads: list[str] = []

    async def load(key: str) -> int | None:
        loads.append(key)
        return None if key == "none" else len(key)

    async def scenario() -> None:
        assert await cache.get("abc", load) == 3
        assert await cache.get("abc", load) == 3
        assert await cache.get("none", load) is None
        assert await cache.get("none", load) is None  # "no such record" is cached too
        assert loads == ["abc", "none"]
        now[0] = 5.0  # expired
        assert await cache.get("abc", load) == 3
        assert loads == ["abc", "none", "abc"]
        await cache.get("x", load)  # a third key: the oldest goes
        assert len(cache) == 2 and "none" not in cache

    _run(scenario())


def test_record_cache_keeps_nothing_loaded_across_an_invalidation() -> None:
    cache: RecordCache[str, str] = RecordCache(ttl=60)
    gate = asyncio.Event

    async def scenario() -> None:
        started, release = gate(), gate()

        async def slow(key: str) -> str:
            started.set()
            await release.wait()
            return "old"

        task = asyncio.create_task(cache.get("alice", slow))
        await started.wait()
        cache.invalidate("alice")  # a write lands while the read is in flight
        release.set()
        assert await task == "old"  # the caller gets what it read...
        assert "alice" not in cache  # ...but it is not kept

    _run(scenario())


def test_store_health_shares_one_ping_and_never_remembers_a_failure() -> None:
    now = [0.0]
    pings: list[float] = []
    up = [True]

    async def ping() -> None:
        pings.append(now[0])
        await asyncio.sleep(0.01)
        if not up[0]:
            raise StoreUnavailable("down")

    health = StoreHealth(ping, timer=lambda: now[0])

    async def scenario() -> None:
        await asyncio.gather(*(health.check(1.0) for _ in range(20)))
        assert len(pings) == 1  # twenty concurrent checks, one ping
        now[0] = 0.5
        await health.check(1.0)
        assert len(pings) == 1  # vouched for
        now[0] = 0.75
        await health.check(1.0)  # answered at once; a ping starts in the background
        await asyncio.sleep(0.05)
        assert len(pings) == 2
        now[0] = 1.5
        await health.check(1.0)  # vouched for by the background ping (at 0.75)
        assert len(pings) == 2
        up[0] = False
        now[0] = 2.6
        for _ in range(2):
            with pytest.raises(StoreUnavailable):
                await health.check(1.0)
        assert len(pings) == 4  # each check after a failure pings again
        up[0] = True
        await health.check(1.0)
        assert len(pings) == 5

    _run(scenario())

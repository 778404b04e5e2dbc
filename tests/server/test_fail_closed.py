"""The server's revocation mirror and its fail-closed answers, per backend.

* **The mirror follows the feed** on SQLite (polling), PostgreSQL (``LISTEN/NOTIFY``) and Redis
  (``XREAD BLOCK``): a session revoked by *another* store instance on the same data is refused
  by the app's ``/userinfo`` and ``/introspect`` (a liveness wait; the latency is measured in
  ``bench/propagation.py``).
* **Outage** (a loopback :class:`FaultProxy` between the app and Redis/PostgreSQL, first paused
  — a silent network — then cut): ``/token`` answers 503 with no token, ``/revoke`` 503 with
  ``Retry-After``, ``/introspect`` never ``active: true``, each within a bound of the store
  timeout; the mirror, once older than ``revocation_max_staleness``, refuses every token. A
  revocation made meanwhile through another instance is picked up after ``restore()``, and
  everything works again — the same app, no restart.

The app runs in-process (Starlette's ``TestClient``) on a :class:`FrozenClock`, so staleness is
driven by the test, not by waiting.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from support.authz import open_api
from support.env import service_missing
from support.faultproxy import FaultProxy
from support.server import basic, bearer, cheap_hasher
from support.stores import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_URL,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    postgres_problem,
    redis_problem,
    rerouted,
)
from support.wait import HANG, LIVENESS
from tokenward.clock import FrozenClock
from tokenward.errors import StoreUnavailable
from tokenward.server import create_app
from tokenward.server.runtime import Runtime
from tokenward.server.settings import Settings
from tokenward.store import Store, store_from_url

# serial: not for an assertion on time but for the product's own: the store timeout under test
# is 0.5 s (so that the outage phases, several timed-out answers each, stay short), and on a loaded
# machine an ordinary PostgreSQL commit before the outage can exceed it (seen with two parallel
# workers at load average 9). Alone, the setup's calls are far inside it.
pytestmark = [pytest.mark.services, pytest.mark.serial]

ISSUER = "https://auth.failclosed.test"
PASSWORD = "fail closed pw"
TIMEOUT = 0.5  # the app's store timeout (TOKENWARD_STORE_TIMEOUT)
# any answer during an outage, whatever the store calls it makes: bounded by the store timeout
# (docs/security.md: no hung request). HANG tells bounded from hung; the outage lasts until
# the test restores it, so a call that ignored the timeout would never answer.
BOUND = 3 * TIMEOUT + HANG
STALENESS = 30.0  # revocation_max_staleness (seconds of the frozen clock)
PROPAGATION = LIVENESS  # a wait; the latency is measured in bench/propagation.py
RECOVERY = LIVENESS  # the follower backs off exponentially while the store is down


@dataclass
class Backend:
    name: str
    url: str  # the data, reached directly
    port: int  # the service's TCP port (for the proxy); 0 for SQLite
    host: str
    prefix: str | None
    cleanup: Callable[[], None]

    def via(self, port: int) -> str:
        """The store URL through a proxy listening on ``port``."""
        return rerouted(self.url, port)

    def other_instance(self) -> Store:
        opts: dict[str, Any] = {"prefix": self.prefix} if self.prefix else {}
        return store_from_url(self.url, **opts)


def _backend(name: str, tmp_path: Path) -> Backend:
    token = uuid.uuid4().hex[:12]
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path / 'tw.db'}", 0, "", None, lambda: None)
    if name == "redis":
        if (problem := redis_problem()) is not None:
            service_missing(problem)
        prefix = f"twsfc{token}"
        return Backend(
            name,
            REDIS_URL,
            REDIS_PORT,
            REDIS_HOST,
            prefix,
            functools.partial(delete_redis_prefix, prefix),
        )
    if (problem := postgres_problem()) is not None:
        service_missing(problem)
    schema = f"tw_sfc_{token}"
    return Backend(
        name,
        f"{POSTGRES_URL}?schema={schema}",
        POSTGRES_PORT,
        POSTGRES_HOST,
        None,
        functools.partial(drop_postgres_schema, schema),
    )


@dataclass
class App:
    http: TestClient
    runtime: Runtime
    clock: FrozenClock
    svc: dict[str, str]  # Basic auth of the confidential client "svc"

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.http.portal.call(fn, *args)  # type: ignore[union-attr]

    def login(self) -> dict[str, Any]:
        r = self.http.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            headers=self.svc,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers=self.svc,
        )

    def introspect(self, token: str) -> httpx.Response:
        return self.http.post("/introspect", data={"token": token}, headers=self.svc)

    def userinfo(self, token: str) -> int:
        return self.http.get("/userinfo", headers=bearer(token)).status_code


@contextlib.contextmanager
def _app(store_url: str, backend: Backend) -> Iterator[App]:
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    settings = Settings(
        store_url=store_url,
        store_prefix=backend.prefix,
        store_timeout=TIMEOUT if backend.port else 10.0,
        key_encryption_key=kek if backend.port else None,
        issuer=ISSUER,
        revocation_max_staleness=STALENESS,
    )
    clock = FrozenClock(1_800_000_000.0)
    app = create_app(settings, clock=clock, password_hasher=cheap_hasher())
    with TestClient(app, base_url="https://testserver") as http:
        rt: Runtime = app.state.runtime

        async def setup() -> str:
            await rt.users.create("alice", PASSWORD)
            _, secret = await rt.clients.create(
                "svc", grants=("password", "refresh_token"), scopes=("read",)
            )
            await open_api(rt, users=["alice"], clients=["svc"], scopes="read")
            assert secret is not None
            return secret

        secret = http.portal.call(setup)  # type: ignore[union-attr]
        yield App(http, rt, clock, basic("svc", secret))


def _revoke_elsewhere(backend: Backend, app: App, sid: str) -> None:
    """Revoke a session through another store instance (another server, in effect)."""

    async def go() -> None:
        store = backend.other_instance()
        async with store:
            now = app.clock.now()
            event = await store.revoke_family(sid, now=now, reason="test", until=now + 3600)
            assert event is not None

    app.call(go)


def _until(bound: float, check: Callable[[], bool]) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > bound:
            pytest.fail(f"not within {bound} s")
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.mark.parametrize("name", ["sqlite", "redis", "postgres"])
def test_mirror_follows_the_store_feed(name: str, tmp_path: Path) -> None:
    backend = _backend(name, tmp_path)
    try:
        with _app(backend.url, backend) as app:
            tok = app.login()
            access = tok["access_token"]
            assert app.userinfo(access) == 200
            _revoke_elsewhere(backend, app, app.runtime.verifier.verify(access).sid or "")
            took = _until(PROPAGATION, lambda: app.userinfo(access) == 401)
            assert app.introspect(access).json() == {"active": False}
            print(f"\n{name}: the server's mirror had the revocation after {took:.3f} s")
    finally:
        backend.cleanup()


def _timed(call: Callable[[], httpx.Response]) -> httpx.Response:
    start = time.monotonic()
    r = call()
    took = time.monotonic() - start
    assert took <= BOUND, f"answered after {took:.2f} s (bound {BOUND} s)"
    return r


def _assert_fail_closed(app: App, live: dict[str, Any], phase: str) -> None:
    for r in (
        _timed(lambda: app.refresh(live["refresh_token"])),
        _timed(_password(app)),
    ):
        assert r.status_code == 503, f"{phase}: /token {r.status_code} {r.text}"
        assert "access_token" not in r.text and "refresh_token" not in r.text
        assert r.headers.get("cache-control") == "no-store"
    r = _timed(
        lambda: app.http.post("/revoke", data={"token": live["refresh_token"]}, headers=app.svc)
    )
    assert r.status_code == 503, f"{phase}: /revoke {r.status_code}"
    assert int(r.headers["retry-after"]) >= 1
    for token in (live["access_token"], live["refresh_token"]):
        r = _timed(lambda t=token: app.introspect(t))  # type: ignore[misc]
        assert r.status_code == 503 or r.json() == {"active": False}, f"{phase}: {r.text}"
        assert "true" not in r.text


def _password(app: App) -> Callable[[], httpx.Response]:
    return lambda: app.http.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=app.svc,
    )


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_outage_fails_closed_and_recovers_without_restart(name: str, tmp_path: Path) -> None:
    backend = _backend(name, tmp_path)
    proxy = FaultProxy(backend.port, target_host=backend.host).start()
    try:
        with _app(backend.via(proxy.port), backend) as app:
            doomed = app.login()  # revoked by another instance during the outage
            live = app.login()
            doomed_sid = app.runtime.verifier.verify(doomed["access_token"]).sid
            assert doomed_sid is not None

            proxy.pause()  # a silent network: every call must time out, not hang
            _assert_fail_closed(app, live, "paused")
            proxy.cut()  # connections reset, new ones refused
            _assert_fail_closed(app, live, "cut")
            _revoke_elsewhere(backend, app, doomed_sid)  # the other instance still reaches it

            # the mirror (no I/O) still verifies; past max_staleness it refuses every token
            # with 503 + Retry-After, never 401 (/userinfo answers 503 meanwhile anyway: it
            # reads the user from the store)
            verifier = app.runtime.verifier
            assert verifier.verify(live["access_token"]).sub == "alice"
            app.clock.advance(STALENESS + 1)
            with pytest.raises(StoreUnavailable) as stale:
                verifier.verify(live["access_token"])
            assert stale.value.status_code == 503 and stale.value.retry_after >= 1

            proxy.restore()
            # the same app, no restart: the follower resyncs and has the missed revocation
            _until(RECOVERY, lambda: app.userinfo(live["access_token"]) == 200)
            assert app.userinfo(doomed["access_token"]) == 401
            assert app.introspect(doomed["access_token"]).json() == {"active": False}
            refreshed = app.refresh(live["refresh_token"])
            assert refreshed.status_code == 200, refreshed.text
            new = refreshed.json()
            assert app.introspect(new["access_token"]).json()["active"] is True
            revoked = app.http.post(
                "/revoke", data={"token": new["refresh_token"]}, headers=app.svc
            )
            assert revoked.status_code == 200
            _until(PROPAGATION, lambda: app.userinfo(new["access_token"]) == 401)
            assert app.refresh(new["refresh_token"]).json()["error"] == "invalid_grant"
    finally:
        proxy.stop()
        backend.cleanup()

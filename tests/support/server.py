"""The in-process server of the server tests: an app on a MemoryStore with a frozen clock, a
cheap argon2 hasher, an API ("api", scopes read write), a role, two users and three clients,
driven through Starlette's TestClient. The
``server`` and ``server_factory`` fixtures are registered for every test by
``tests/conftest.py``."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tokenward.clock import FrozenClock
from tokenward.server import create_app
from tokenward.server.runtime import Runtime
from tokenward.server.settings import Settings
from tokenward.store.memory import MemoryStore

T = TypeVar("T")

ISSUER = "https://auth.tokenward.test"
ALICE_PW = "correct horse battery"
ADMIN_PW = "admin password 1"
PEER = "192.0.2.10"  # the socket peer of the test client (an address, as from a real socket)


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    http: TestClient
    runtime: Runtime
    store: MemoryStore
    clock: FrozenClock
    svc_secret: str  # confidential client "svc": all grants, scopes read write

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine function on the app's event loop."""
        return self.http.portal.call(fn, *args)  # type: ignore[union-attr,no-any-return]

    def password(self, username: str = "alice", password: str = ALICE_PW, **extra: str) -> Any:
        data = {"grant_type": "password", "username": username, "password": password}
        data.setdefault("client_id", "app")
        data.update(extra)
        return self.http.post("/token", data=data)

    def refresh(self, rt: str, client_id: str = "app", **extra: str) -> Any:
        """``POST /token`` with ``grant_type=refresh_token`` (RFC 6749 §6)."""
        data = {"grant_type": "refresh_token", "refresh_token": rt, "client_id": client_id}
        data.update(extra)
        return self.http.post("/token", data=data)

    def login(self, **extra: str) -> dict[str, Any]:
        r = self.password(**extra)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def svc(self) -> dict[str, str]:
        return basic("svc", self.svc_secret)


def make_settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "store_url": "memory://",
        "issuer": ISSUER,
        "default_resource": "api",
        "login_limit_per_account": "5/minute",
        "login_limit_per_ip": "50/minute",
        "cookie_secure": True,
        # the frozen clock jumps hours while the in-process feed is healthy; the staleness
        # rule itself is tested in tests/test_server_fail_closed.py and tests/test_revocation.py
        "revocation_max_staleness": 30 * 86400,
    }
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Server]]:
    stack: list[TestClient] = []

    def make(store: Any = None, *, populate: bool = True, **settings: Any) -> Server:
        """``store``: another store than a fresh ``MemoryStore`` (opened by the app);
        ``populate=False``: no set-up (a second instance on a store already set up)."""
        clock = FrozenClock(1_800_000_000.0)
        store = store if store is not None else MemoryStore()
        app = create_app(
            make_settings(**settings), store=store, clock=clock, password_hasher=cheap_hasher()
        )
        http = TestClient(app, base_url="https://testserver", client=(PEER, 50000))
        http.__enter__()
        stack.append(http)
        rt: Runtime = app.state.runtime

        async def setup() -> str:
            # the authorization model: an API "api" (the default resource) with read and
            # write, a role "member" holding both; alice is a member, root an admin
            await rt.resources.add("api", name="API", scopes="read write", default_scopes="read")
            await rt.roles.add("member", "read write")
            await rt.users.create("alice", ALICE_PW, roles=["member"])
            await rt.users.create("root", ADMIN_PW, is_admin=True, roles=["member"])
            both = ("api", ISSUER)
            user_scopes = ("read", "write", "admin", "openid", "profile")
            for public in ("app", "other"):
                await rt.clients.create(
                    public,
                    public=True,
                    grants=("password", "refresh_token"),
                    scopes=user_scopes,
                    resources=both,
                )
            _, secret = await rt.clients.create(
                "svc",
                grants=("password", "refresh_token", "client_credentials"),
                scopes=("read", "write", "revocations"),
                resources=both,
            )
            assert secret is not None
            return secret

        secret = http.portal.call(setup) if populate else ""  # type: ignore[union-attr]
        return Server(http, rt, store, clock, secret)

    yield make
    for http in reversed(stack):
        http.__exit__(None, None, None)


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()

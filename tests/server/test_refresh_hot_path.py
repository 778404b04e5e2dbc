"""The refresh grant's store reads: the user once, the client as authenticated, the
resources and role definitions from a short-lived copy that this process's own changes drop
at once and a change made elsewhere (another instance, the CLI) replaces within its
lifetime; a disabled user or a revoked session is refused on the very next refresh."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from support.server import Server
from tokenward.jws import b64url_decode
from tokenward.store.base import Role

READS = ("get_user", "get_client", "get_role", "list_roles", "list_resources", "get_resource")


def _count_reads(server: Server) -> Counter[str]:
    calls: Counter[str] = Counter()
    store: Any = server.store
    for name in READS:
        fn = getattr(store, name)

        async def wrapped(*a: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return await _fn(*a, **kw)

        setattr(store, name, wrapped)
    return calls


def _scope(body: dict[str, Any]) -> set[str]:
    claims = orjson.loads(b64url_decode(body["access_token"].split(".")[1]))
    return set(str(claims.get("scope", "")).split())


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticking(server: Server) -> FakeMonotonic:
    fake = FakeMonotonic()
    server.runtime.authorizer.monotonic = fake
    server.runtime.authorizer.invalidate()
    return fake


def test_a_warm_refresh_reads_the_user_once_and_the_client_once(server: Server) -> None:
    pair = server.login(scope="read write")
    first = server.refresh(pair["refresh_token"])
    assert first.status_code == 200, first.text
    calls = _count_reads(server)
    r = server.refresh(first.json()["refresh_token"])
    assert r.status_code == 200, r.text
    # the user by the credential check (reused by the authorization check), the client by
    # the client authentication of /token (reused too); the model from the recent copy
    assert calls == Counter({"get_user": 1, "get_client": 1})


def test_a_role_change_through_this_server_reaches_the_next_refresh(
    server: Server, ticking: FakeMonotonic
) -> None:
    pair = server.login(scope="read write")
    warm = server.refresh(pair["refresh_token"]).json()
    assert _scope(warm) == {"read", "write"}

    async def narrow() -> None:
        await server.runtime.roles.set("member", "read")

    server.run(narrow)  # no time passes: the registry dropped the copy
    assert _scope(server.refresh(warm["refresh_token"]).json()) == {"read"}


def test_a_role_change_made_elsewhere_reaches_refresh_within_the_copy_lifetime(
    server: Server, ticking: FakeMonotonic
) -> None:
    pair = server.login(scope="read write")
    warm = server.refresh(pair["refresh_token"]).json()

    async def narrow_in_the_store() -> None:  # as the CLI or another instance would
        role = await server.store.get_role("member")
        assert role is not None
        await server.store.update_role(Role(role.name, role.created_at, ("read",)))

    server.run(narrow_in_the_store)
    still = server.refresh(warm["refresh_token"]).json()
    assert _scope(still) == {"read", "write"}  # the copy is younger than its lifetime
    ticking.now += server.runtime.authorizer.model_ttl
    assert _scope(server.refresh(still["refresh_token"]).json()) == {"read"}


def test_a_disabled_user_is_refused_on_the_next_refresh_despite_the_copy(
    server: Server, ticking: FakeMonotonic
) -> None:
    pair = server.login(scope="read")
    warm = server.refresh(pair["refresh_token"]).json()

    async def disable_in_the_store() -> None:  # not through this server: no revocation
        user = await server.store.get_user("alice")
        assert user is not None
        user.disabled = True
        await server.store.update_user(user)

    server.run(disable_in_the_store)
    r = server.refresh(warm["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_a_disabled_client_is_refused_on_the_next_refresh(server: Server) -> None:
    pair = server.login(scope="read")
    warm = server.refresh(pair["refresh_token"]).json()

    async def disable_client() -> None:
        client = await server.store.get_client("app")
        assert client is not None
        client.disabled = True
        await server.store.update_client(client)

    server.run(disable_client)
    r = server.refresh(warm["refresh_token"])
    assert r.status_code in (400, 401) and r.json()["error"] in ("invalid_client",)

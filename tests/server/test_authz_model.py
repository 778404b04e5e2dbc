"""The authorization model through the server: no self-granted scopes on any path, tokens for
the requested resource, entitlement re-checked at refresh, admin API rules, the upgrade of
stores from before the model."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from support.server import ISSUER, Server, bearer
from tokenward.errors import InvalidClaims
from tokenward.jws import b64url_decode
from tokenward.server.authz_changes import upgrade_authorization_model
from tokenward.store.base import Client, User
from tokenward.store.memory import MemoryStore
from tokenward.verifier import Verifier

BOB_PW = "bob password 123"
ORDERS = "https://orders.example"


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = orjson.loads(b64url_decode(token.split(".")[1]))
    return claims


@pytest.fixture
def bob(server: Server) -> Server:
    """bob holds only ``read`` (role reader); an orders API whose scopes nobody gave him."""

    async def setup() -> None:
        rt = server.runtime
        await rt.roles.add("reader", "read")
        await rt.users.create("bob", BOB_PW, roles=["reader"])
        await rt.resources.add(ORDERS, name="Orders", scopes="orders:read orders:delete")
        await rt.clients.set_permissions(
            "app",
            resources=["api", ORDERS, ISSUER],
            scopes=["read", "write", "orders:read", "orders:delete", "openid", "profile"],
        )

    server.run(setup)
    return server


def _scopes(body: dict[str, Any]) -> set[str]:
    return set(body.get("scope", "").split()) | set(
        claims_of(body["access_token"]).get("scope", "").split()
    )


# -- the exploit: a user asks for scopes nobody gave them ----------------------------------------
def test_exploit_fails_at_token_password_grant_with_the_console_client(bob: Server) -> None:
    # the scopes belong to APIs the console may not ask for at all (RFC 8707 invalid_target),
    # and with the API named, the console may not receive them (invalid_scope)
    r = bob.password("bob", BOB_PW, client_id="tokenward-console", scope="read write orders:delete")
    assert r.status_code == 400 and "access_token" not in r.json()
    assert r.json()["error"] == "invalid_target"
    r = bob.password("bob", BOB_PW, client_id="tokenward-console", scope="write")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = bob.password("bob", BOB_PW, client_id="tokenward-console", scope="write", resource=ISSUER)
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_exploit_fails_at_token_password_grant_scope_the_user_lacks_is_dropped(bob: Server) -> None:
    ok = bob.password("bob", BOB_PW, scope="read write")
    assert ok.status_code == 200, ok.text
    assert _scopes(ok.json()) == {"read"}  # RFC 6749 §3.3: the response says what was granted
    nothing = bob.password("bob", BOB_PW, scope="write")
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_scope"
    other = bob.password("bob", BOB_PW, scope="orders:delete", resource=ORDERS)
    assert other.status_code == 400 and other.json()["error"] == "invalid_scope"


def test_exploit_fails_at_refresh(bob: Server) -> None:
    pair = bob.password("bob", BOB_PW, scope="read").json()
    wider = bob.refresh(pair["refresh_token"], scope="read write")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    again = bob.refresh(pair["refresh_token"])
    assert again.status_code == 200 and _scopes(again.json()) == {"read"}


def test_exploit_fails_at_login_token_mode(bob: Server) -> None:
    body = {"username": "bob", "password": BOB_PW, "client_id": "app"}
    r = bob.http.post("/login", json={**body, "scope": "write"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = bob.http.post("/login", json={**body, "scope": "read write"})
    assert r.status_code == 200 and _scopes(r.json()) == {"read"}


def test_exploit_fails_at_login_cookie_mode(bob: Server) -> None:
    body = {"username": "bob", "password": BOB_PW, "client_id": "app", "mode": "cookie"}
    r = bob.http.post("/login", json={**body, "scope": "write"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = bob.http.post("/login", json={**body, "scope": "read write"})
    assert r.status_code == 200 and _scopes(r.json()) == {"read"}
    csrf = r.json()["csrf_token"]
    form = {"grant_type": "refresh_token", "client_id": "app", "scope": "read write"}
    wider = bob.http.post("/token", data=form, headers={"X-CSRF-Token": csrf})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_console_client_gets_only_the_consoles_scopes(bob: Server) -> None:
    r = bob.password("bob", BOB_PW, client_id="tokenward-console")
    assert r.status_code == 200 and _scopes(r.json()) == {"openid", "profile"}
    assert claims_of(r.json()["access_token"])["aud"] == ISSUER
    admin = bob.password("root", "admin password 1", client_id="tokenward-console", scope="admin")
    assert admin.status_code == 200 and _scopes(admin.json()) == {"admin"}


# -- audience ------------------------------------------------------------------------------------
def test_rfc8707_token_aud_is_the_requested_resource(bob: Server) -> None:
    body = bob.password("alice", "correct horse battery", scope="read").json()
    assert claims_of(body["access_token"])["aud"] == "api"  # no resource: the default
    r = bob.password("bob", BOB_PW, resource=ORDERS, scope="orders:read")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"  # bob lacks it

    async def give() -> None:
        await bob.runtime.roles.set("reader", "read orders:read")

    bob.run(give)
    r = bob.password("bob", BOB_PW, resource=ORDERS, scope="orders:read openid")
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["aud"] == [ORDERS, ISSUER]


def test_rfc8707_token_for_resource_a_is_refused_by_a_verifier_for_resource_b(
    bob: Server,
) -> None:
    token = bob.password("alice", "correct horse battery", scope="read").json()["access_token"]
    rt = bob.runtime
    for_api = Verifier(rt.keyring, issuer=ISSUER, audience="api", clock=bob.clock)
    for_orders = Verifier(rt.keyring, issuer=ISSUER, audience=ORDERS, clock=bob.clock)
    assert for_api.verify(token).sub == "alice"
    with pytest.raises(InvalidClaims, match="aud"):
        for_orders.verify(token)


def test_rfc8707_several_resources_at_token_and_login_is_invalid_target(bob: Server) -> None:
    r = bob.http.post(
        "/token",
        content=f"grant_type=password&username=bob&password={BOB_PW.replace(' ', '+')}"
        f"&client_id=app&resource=api&resource={ORDERS}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = bob.http.post(
        "/login",
        json={
            "username": "bob",
            "password": BOB_PW,
            "client_id": "app",
            "resource": ["api", ORDERS],
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = bob.password("bob", BOB_PW, resource="https://unknown.example")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


def test_userinfo_accepts_tokens_for_any_of_the_servers_resources(bob: Server) -> None:
    async def give() -> None:
        await bob.runtime.roles.set("reader", "read orders:read")

    bob.run(give)
    token = bob.password("bob", BOB_PW, resource=ORDERS, scope="orders:read").json()
    info = bob.http.get("/userinfo", headers=bearer(token["access_token"]))
    assert info.status_code == 200 and info.json()["sub"] == "bob"


def test_per_resource_access_token_lifetime(bob: Server) -> None:
    async def setup() -> None:
        await bob.runtime.resources.set(ORDERS, access_token_ttl=300)
        await bob.runtime.roles.set("reader", "read orders:read")

    bob.run(setup)
    r = bob.password("bob", BOB_PW, resource=ORDERS, scope="orders:read").json()
    assert r["expires_in"] == 300
    c = claims_of(r["access_token"])
    assert c["exp"] - c["iat"] == 300


# -- refresh re-evaluates entitlement -------------------------------------------------------------
def test_role_change_narrows_the_next_refresh(server: Server) -> None:
    pair = server.login(scope="read write")
    assert _scopes(pair) == {"read", "write"}

    async def narrow() -> None:
        await server.runtime.roles.set("member", "read")

    server.run(narrow)
    r = server.refresh(pair["refresh_token"])
    assert r.status_code == 200 and _scopes(r.json()) == {"read"}


def test_refresh_with_nothing_left_is_invalid_grant(server: Server) -> None:
    pair = server.login(scope="write")

    async def take() -> None:
        await server.runtime.roles.set_user_roles("alice", "")

    server.run(take)
    r = server.refresh(pair["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_client_permission_change_narrows_the_next_refresh(server: Server) -> None:
    pair = server.login(scope="read write")

    async def narrow() -> None:
        await server.runtime.clients.set_permissions("app", scopes=["read"])

    server.run(narrow)
    assert _scopes(server.refresh(pair["refresh_token"]).json()) == {"read"}


def test_refresh_may_ask_for_another_resource_of_the_grant_only(bob: Server) -> None:
    pair = bob.password("alice", "correct horse battery", scope="read").json()
    r = bob.refresh(pair["refresh_token"], resource=ORDERS)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


# -- admin API ------------------------------------------------------------------------------------
def _admin(server: Server) -> dict[str, str]:
    tok = server.password("root", "admin password 1", scope="admin").json()["access_token"]
    return bearer(tok)


def test_admin_api_resources_roles_user_roles_and_client_permissions(server: Server) -> None:
    h = _admin(server)
    r = server.http.post(
        "/admin/resources",
        headers=h,
        json={
            "identifier": ORDERS,
            "name": "Orders",
            "scopes": {"orders:read": "read orders", "orders:write": "place orders"},
            "default_scopes": ["orders:read"],
        },
    )
    assert r.status_code == 201, r.text
    clash = server.http.post(
        "/admin/resources",
        headers=h,
        json={"identifier": "https://b.example", "name": "B", "scopes": ["orders:read"]},
    )
    assert clash.status_code == 409 and "already defined" in clash.json()["error_description"]
    reserved = server.http.post(
        "/admin/resources",
        headers=h,
        json={"identifier": "https://c.example", "name": "C", "scopes": ["admin"]},
    )
    assert reserved.status_code == 409
    not_uri = server.http.post(
        "/admin/resources", headers=h, json={"identifier": "orders", "name": "O", "scopes": ["x"]}
    )
    assert not_uri.status_code == 400 and "absolute URI" in not_uri.json()["error_description"]
    listed = server.http.get("/admin/resources", headers=h).json()
    assert [x["identifier"] for x in listed] == [ISSUER, "api", ORDERS] and listed[0]["builtin"]

    assert (
        server.http.post(
            "/admin/roles", headers=h, json={"name": "clerk", "scopes": ["orders:read"]}
        ).status_code
        == 201
    )
    undefined = server.http.post("/admin/roles", headers=h, json={"name": "x", "scopes": ["nope"]})
    assert undefined.status_code == 400
    assert server.http.put(
        "/admin/roles/clerk", headers=h, json={"scopes": ["orders:read", "orders:write"]}
    ).json()["role"]["scopes"] == ["orders:read", "orders:write"]
    r = server.http.put("/admin/users/alice/roles", headers=h, json={"roles": ["clerk"]})
    assert r.status_code == 200 and r.json()["roles"] == ["clerk"]
    assert (
        server.http.put(
            "/admin/users/alice/roles", headers=h, json={"roles": ["ghost"]}
        ).status_code
        == 400
    )
    r = server.http.patch(
        "/admin/clients/app", headers=h, json={"resources": [ORDERS], "scopes": ["orders:read"]}
    )
    assert r.status_code == 200 and r.json()["scopes"] == ["orders:read"]
    bad = server.http.patch("/admin/clients/app", headers=h, json={"scopes": ["read"]})
    assert bad.status_code == 400  # read belongs to "api", not to the client's resources
    assert server.http.patch("/admin/clients/nope", headers=h, json={}).status_code == 404

    token = server.login(resource=ORDERS)
    assert _scopes(token) == {"orders:read"}
    assert server.http.delete(f"/admin/resources/{ORDERS}", headers=h).status_code == 204
    assert server.http.delete(f"/admin/resources/{ORDERS}", headers=h).status_code == 404
    assert server.http.delete("/admin/roles/clerk", headers=h).json()["sessions_revoked"] == 0


def test_admin_role_change_with_now_revokes_the_affected_sessions_at_once(
    server: Server,
) -> None:
    h = _admin(server)
    pair = server.login(scope="write")
    keep = server.login(scope="read")
    r = server.http.put("/admin/roles/member", headers=h, json={"scopes": ["read"], "now": True})
    assert r.status_code == 200 and r.json()["sessions_revoked"] == 1
    assert server.http.get("/userinfo", headers=bearer(pair["access_token"])).status_code == 401
    assert server.http.get("/userinfo", headers=bearer(keep["access_token"])).status_code == 200


def test_last_admin_cannot_lose_the_admin_scope(server: Server) -> None:
    h = _admin(server)
    r = server.http.put("/admin/users/root/roles", headers=h, json={"roles": ["member"]})
    assert r.status_code == 409 and "administrator" in r.json()["error_description"]
    assert server.http.delete("/admin/roles/admin", headers=h).status_code == 409
    r = server.http.put("/admin/roles/admin", headers=h, json={"scopes": ["revocations"]})
    assert r.status_code == 409
    # with a second administrator, the first may step down
    ok = server.http.put("/admin/users/alice/roles", headers=h, json={"roles": ["admin"]})
    assert ok.status_code == 200
    assert (
        server.http.put(
            "/admin/users/root/roles", headers=h, json={"roles": ["member"]}
        ).status_code
        == 200
    )


def test_metadata_scopes_supported_are_the_scopes_clients_can_get(server: Server) -> None:
    meta = server.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["scopes_supported"] == sorted(
        {"read", "write", "revocations", "admin", "openid", "profile"}
    )


# -- the upgrade of stores from before the model ----------------------------------------------
async def test_upgrade_keeps_registered_scopes_and_gives_admins_the_admin_role() -> None:
    store = MemoryStore()
    await store.create_user(User("root", "h", 1.0, is_admin=True))
    await store.create_user(User("bob", "h", 1.0))
    await store.create_client(Client("svc", 1.0, "x", scopes=("read", "write", "revocations")))
    await store.create_client(Client("web", 1.0, scopes=()))
    await store.create_client(Client("tokenward-console", 1.0, scopes=()))
    bare = await upgrade_authorization_model(
        store, issuer=ISSUER, default_resource="api", console_client_id="tokenward-console"
    )
    assert bare == ["web"]
    root = await store.get_user("root")
    assert root is not None and root.roles == ("admin",)
    svc = await store.get_client("svc")
    assert svc is not None and svc.scopes == ("read", "write", "revocations")
    assert svc.resources == ("api", ISSUER)
    api = await store.get_resource("api")
    assert api is not None and set(api.scopes) == {"read", "write"}
    console = await store.get_client("tokenward-console")
    assert console is not None and console.scopes == ("openid", "profile", "admin")
    role = await store.get_role("admin")
    assert role is not None and role.scopes == ("admin",)


def test_serve_warns_about_clients_without_scopes(caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from support.server import cheap_hasher, make_settings
    from tokenward.server import create_app

    store = MemoryStore()
    store._clients["old-web"] = Client("old-web", 1.0, scopes=())  # registered before
    app = create_app(make_settings(), store=store, password_hasher=cheap_hasher())
    with caplog.at_level(logging.WARNING, logger="tokenward.server"), TestClient(app):
        pass
    assert any("old-web" in r.getMessage() for r in caplog.records)

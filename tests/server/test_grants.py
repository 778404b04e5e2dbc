"""Grant types are registered objects: one registry, read by /token, client registration,
discovery and the OpenAPI description."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from support.server import Server
from tokenward.errors import ConfigurationError, InvalidRequest
from tokenward.server.clients import ClientRegistry
from tokenward.server.errors import JSON
from tokenward.server.grants import GRANTS, grant_names, load_grant, register_grant
from tokenward.server.grants.base import Grant, GrantContext
from tokenward.server.grants.common import token_response
from tokenward.store.memory import MemoryStore


@pytest.mark.parametrize("name", list(GRANTS))
def test_each_grant_class_declares_its_registry_name_and_flags(name: str) -> None:
    grant = load_grant(name)
    assert isinstance(grant, Grant)
    assert type(grant).name == name
    assert type(grant).confidential_only is GRANTS[name].confidential_only


def test_the_registry_imports_no_web_framework() -> None:
    code = (
        "import sys, tokenward.server.grants, tokenward.server.clients\n"
        "print(sorted(m for m in ('fastapi', 'starlette') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_discovery_and_openapi_list_the_registered_grants(server: Server) -> None:
    meta = server.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["grant_types_supported"] == list(grant_names())
    schema = server.http.get("/openapi.json").json()
    form = schema["paths"]["/token"]["post"]["requestBody"]["content"]
    body = next(iter(form.values()))["schema"]
    assert body["properties"]["grant_type"]["enum"] == list(grant_names())


async def test_client_registration_checks_names_and_confidential_only_from_the_registry() -> None:
    clients = ClientRegistry(MemoryStore())
    with pytest.raises(ConfigurationError, match="unknown grant"):
        await clients.create("c1", grants=("nope",))
    with pytest.raises(ConfigurationError, match="public client cannot use client_credentials"):
        await clients.create("c2", public=True, grants=("client_credentials",))
    c, _secret = await clients.create("c3", grants=tuple(grant_names()))
    assert c.grants == tuple(grant_names())


class EchoGrant(Grant):
    """A test grant: answers with the client id (what a new grant type needs, and no more)."""

    name = "urn:test:echo"
    form_fields = {"echo": {"type": "string"}}  # noqa: RUF012

    async def handle(self, ctx: GrantContext) -> JSON:
        echo = ctx.form.get("echo")
        if echo is None:
            raise InvalidRequest("echo is required")
        body: dict[str, Any] = {"client_id": ctx.client.client_id, "echo": echo}
        return token_response(body)


def test_a_new_grant_is_one_class_and_one_registration(server: Server) -> None:
    register_grant("urn:test:echo", f"{__name__}:EchoGrant")
    try:
        data = {"grant_type": "urn:test:echo", "client_id": "app", "echo": "hi"}
        refused = server.http.post("/token", data=data)  # "app" is not registered for it
        assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"

        async def register() -> None:
            await server.runtime.clients.create("echoer", public=True, grants=("urn:test:echo",))

        server.run(register)
        r = server.http.post("/token", data={**data, "client_id": "echoer"})
        assert r.status_code == 200, r.text
        assert r.json() == {"client_id": "echoer", "echo": "hi"}
        assert r.headers["cache-control"] == "no-store"
        missing = server.http.post(
            "/token", data={"grant_type": "urn:test:echo", "client_id": "echoer"}
        )
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    finally:
        GRANTS.pop("urn:test:echo", None)
    r = server.http.post("/token", data={**data, "client_id": "echoer"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"

"""Test helper: the authorization model that tests written before it assumed — one API (the
default resource ``api``) whose scopes the given users hold (role ``member``) and the given
clients may receive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


async def open_api(
    rt: Any,
    *,
    users: Iterable[str] = (),
    clients: Iterable[str] = (),
    scopes: str = "read write",
    extra_client_scopes: Iterable[str] = (),
) -> None:
    """``rt`` is a :class:`tokenward.server.runtime.Runtime`."""
    if await rt.store.get_resource("api") is None:
        await rt.resources.add("api", name="API", scopes=scopes, default_scopes=scopes)
    if await rt.store.get_role("member") is None:
        await rt.roles.add("member", scopes)
    for name in users:
        user = await rt.store.get_user(name)
        await rt.roles.set_user_roles(name, [*user.roles, "member"])
    for client_id in clients:
        await rt.clients.set_permissions(
            client_id,
            resources=["api", rt.settings.issuer],
            scopes=[*scopes.split(), *extra_client_scopes],
        )

"""Changes to the authorization model and the sessions they touch: which live sessions hold
scope they may no longer have (for ``--now``), revoking them, and the one-time upgrade of stores
from before the model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import replace

from ..errors import ConfigurationError
from ..store.base import Client, Family, Resource, Role, Store
from .authorization import OIDC_SCOPES, RESERVED_SCOPES, entitlement
from .authz import ADMIN_ROLE, CONSOLE_SCOPES, catalog_of

__all__ = ["affected_sessions", "revoke_families", "upgrade_authorization_model"]

_UPGRADE_MARKER = "authz-model-v1"


async def affected_sessions(
    store: Store,
    *,
    issuer: str,
    usernames: Iterable[str] | None = None,
    client_id: str | None = None,
    console_client_id: str | None = None,
) -> list[Family]:
    """The live sessions of ``usernames`` (or of every user) that now hold scope the user or
    the client (``client_id``: only that client's sessions) may no longer have."""
    catalog = await catalog_of(store, issuer)
    roles = {r.name: r for r in await store.list_roles()}
    names = (
        list(usernames) if usernames is not None else [u.username for u in await store.list_users()]
    )
    out: list[Family] = []
    clients: dict[str, Client | None] = {}
    for name in names:
        user = await store.get_user(name)
        entitled = entitlement(user.roles, roles) if user is not None else frozenset()
        for fam in await store.list_families(name):
            if client_id is not None and fam.client_id != client_id:
                continue
            if fam.client_id not in clients:
                found = await store.get_client(fam.client_id)
                if found is not None and found.client_id == console_client_id:
                    found = replace(found, scopes=CONSOLE_SCOPES, resources=(issuer,))
                clients[fam.client_id] = found
            client = clients[fam.client_id]
            for s in fam.scope.split():
                owner = catalog.owner.get(s)
                allowed = (
                    client is not None
                    and s in client.scopes
                    and owner is not None
                    and (owner in client.resources or s in OIDC_SCOPES)
                )
                if not allowed or s not in entitled:
                    out.append(fam)
                    break
    return out


# -- the one-time upgrade of stores from before the model ----------------------------------------
async def upgrade_authorization_model(
    store: Store, *, issuer: str, default_resource: str, console_client_id: str
) -> list[str]:
    """Bring a store from before the authorization model into it, once (every backend):
    the ``admin`` role; users marked admin get it; each client keeps exactly the scopes it
    had registered (those not reserved are defined by the default resource, created for
    them); the console gets the console's scopes only. Returns the ids of clients left with
    no scope (they get no token until given some)."""
    ran: list[bool] = []

    def mark() -> bytes:
        ran.append(True)
        return b"1"

    await store.get_or_create_secret(_UPGRADE_MARKER, mark)
    if ran:
        if await store.get_role(ADMIN_ROLE) is None:
            with contextlib.suppress(ConfigurationError):  # a concurrent first start made it
                await store.create_role(Role(ADMIN_ROLE, time.time(), ("admin",), "administrators"))
        for user in await store.list_users():
            if user.is_admin and ADMIN_ROLE not in user.roles:
                await store.update_user(replace(user, roles=(*user.roles, ADMIN_ROLE)))
        legacy: dict[str, str] = {}
        for client in await store.list_clients():
            if client.client_id == console_client_id or client.resources:
                continue
            own = [s for s in client.scopes if s not in RESERVED_SCOPES]
            legacy.update(dict.fromkeys(own, "(registered before resources existed)"))
            resources = ([default_resource] if own else []) + (
                [issuer] if len(own) < len(client.scopes) else []
            )
            await store.update_client(replace(client, resources=tuple(resources)))
        if legacy:
            found = await store.get_resource(default_resource)
            if found is None:
                await store.create_resource(
                    Resource(
                        default_resource,
                        default_resource,
                        time.time(),
                        scopes=legacy,
                        default_scopes=tuple(legacy),
                    )
                )
    console = await store.get_client(console_client_id)
    if console is not None and (issuer not in console.resources or not console.scopes):
        await store.update_client(replace(console, resources=(issuer,), scopes=CONSOLE_SCOPES))
    return [c.client_id for c in await store.list_clients() if not c.scopes]


async def revoke_families(
    store: Store, families: Iterable[Family], *, now: float, until: float
) -> int:
    """Revoke ``families`` at once (each a ``sid`` event on the feed); the number revoked."""
    n = 0
    for fam in families:
        event = await store.revoke_family(
            fam.sid, now=now, reason="authorization_changed", until=until
        )
        n += event is not None
    return n

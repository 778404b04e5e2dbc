"""The authorization model kept in the store: resources (APIs), roles, user roles and client
permissions, and :class:`Authorizer`, which loads them for the pure decision in
:mod:`.authorization`.

Rules enforced here (every writer — CLI, admin API, console — goes through this module):

* a resource identifier is an absolute URI without fragment (RFC 8707 §2); a bare name is
  accepted only for the configured default resource (``TOKENWARD_DEFAULT_RESOURCE``, ``api``);
  the issuer is the server's own resource and cannot be registered;
* a scope name is defined by exactly one resource, and never one of the reserved server
  scopes → :class:`~tokenward.errors.AlreadyExists` (HTTP 409, CLI exit 2); an unknown
  resource, role, user or client → :class:`~tokenward.errors.NotFound` (HTTP 404, CLI exit 2);
* a role, a client or a resource's default scopes name only scopes some resource defines;
* at least one active user keeps the ``admin`` scope (:func:`ensure_an_admin_remains`, the
  one rule behind disabling, removing and demoting users, and changing or removing roles).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from ..errors import AlreadyExists, ConfigurationError, InvalidRequest, NotFound
from ..store.base import (
    AccountStore,
    AuthorizationStore,
    Client,
    Family,
    Resource,
    Role,
    Store,
    User,
)
from .authorization import (
    OIDC_SCOPES,
    RESERVED_SCOPES,
    Catalog,
    Grant,
    authorize,
    entitlement,
    parse_scope,
    reauthorize,
)

__all__ = [
    "ADMIN_ROLE",
    "CONSOLE_SCOPES",
    "REFRESH_MODEL_TTL",
    "Authorizer",
    "LastAdmin",
    "ResourceRegistry",
    "RoleRegistry",
    "catalog_of",
    "check_client_permissions",
    "check_roles",
    "ensure_an_admin_remains",
]

log = logging.getLogger("tokenward.server")

ADMIN_ROLE = "admin"
#: What the console's own client may receive (it asks for the server itself only).
CONSOLE_SCOPES = ("openid", "profile", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_MAX_ID = 512
_MAX_TTL = 86400


class LastAdmin(InvalidRequest):
    """The change would leave no active administrator (it conflicts with the current state:
    HTTP 409, RFC 9110 §15.5.10)."""

    status_code = 409


def _scopes(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return parse_scope(value)
    items = list(value)
    return parse_scope(" ".join(items)) if items else []


async def catalog_of(store: Store, issuer: str) -> Catalog:
    return Catalog(await store.list_resources(), issuer=issuer)


def _check_defined(scopes: Iterable[str], catalog: Catalog, what: str) -> None:
    unknown = [s for s in scopes if s not in catalog.owner]
    if unknown:
        raise ConfigurationError(f"{what}: no resource defines {', '.join(unknown)}")


# -- resources -------------------------------------------------------------------------------
class ResourceRegistry:
    """Add, change, list and remove resources (the server's own is implicit)."""

    def __init__(
        self,
        store: Store,
        *,
        issuer: str,
        default_resource: str,
        max_ttl: int = _MAX_TTL,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.default_resource = default_resource
        self.max_ttl = max_ttl
        self.on_change = on_change  # called after every change (drops cached copies)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _check_identifier(self, identifier: str) -> None:
        if not identifier or len(identifier) > _MAX_ID or not identifier.isprintable():
            raise ConfigurationError(f"a resource identifier is 1-{_MAX_ID} printable characters")
        if identifier == self.issuer:
            raise AlreadyExists("the issuer is the server's own resource")
        if identifier == self.default_resource:
            return
        parts = urlsplit(identifier)
        if not parts.scheme or not (parts.netloc or parts.path) or "#" in identifier:
            raise ConfigurationError(
                "a resource identifier is an absolute URI without fragment (RFC 8707 §2), "
                "e.g. https://orders.example.com"
            )

    async def _validate(self, resource: Resource) -> None:
        if not resource.name or len(resource.name) > 200 or not resource.name.isprintable():
            raise ConfigurationError("a resource name is 1-200 printable characters")
        if not resource.scopes:
            raise ConfigurationError("a resource defines at least one scope")
        reserved = sorted(RESERVED_SCOPES.intersection(resource.scopes))
        if reserved:
            raise AlreadyExists(f"scope {reserved[0]!r} is reserved for the server itself")
        for other in await self.store.list_resources():
            if other.identifier == resource.identifier:
                continue
            clash = sorted(set(other.scopes).intersection(resource.scopes))
            if clash:
                raise AlreadyExists(f"scope {clash[0]!r} is already defined by {other.identifier}")
        extra = [s for s in resource.default_scopes if s not in resource.scopes]
        if extra:
            raise ConfigurationError(f"default scope {extra[0]!r} is not one of its scopes")
        ttl = resource.access_token_ttl
        if ttl is not None and not 0 < ttl <= self.max_ttl:
            raise ConfigurationError(
                f"an access-token lifetime is 1-{self.max_ttl} seconds (at most the server's "
                "TOKENWARD_ACCESS_TOKEN_TTL, which bounds how long revocations are kept)"
            )
        if resource.encryption_key is not None:
            resource.encryption_key = public_encryption_key(resource.encryption_key)

    async def add(
        self,
        identifier: str,
        *,
        name: str,
        scopes: str | Iterable[str] | Mapping[str, str],
        default_scopes: str | Iterable[str] | None = None,
        access_token_ttl: int | None = None,
        encryption_key: Mapping[str, Any] | None = None,
    ) -> Resource:
        self._check_identifier(identifier)
        resource = Resource(
            identifier=identifier,
            name=name,
            created_at=time.time(),
            scopes=_scope_map(scopes),
            default_scopes=tuple(_scopes(default_scopes)),
            access_token_ttl=access_token_ttl,
            encryption_key=dict(encryption_key) if encryption_key else None,
        )
        await self._validate(resource)
        try:
            await self.store.create_resource(resource)
        except AlreadyExists:
            raise AlreadyExists(f"resource {identifier!r} exists") from None
        self._changed()
        return resource

    async def set(
        self,
        identifier: str,
        *,
        name: str | None = None,
        scopes: str | Iterable[str] | Mapping[str, str] | None = None,
        default_scopes: str | Iterable[str] | None = None,
        access_token_ttl: int | None = None,
        encryption_key: Mapping[str, Any] | None = None,
        clear_ttl: bool = False,
        clear_encryption: bool = False,
    ) -> Resource:
        found = await self.store.get_resource(identifier)
        if found is None:
            raise NotFound(f"no resource {identifier!r}")
        if name is not None:
            found.name = name
        if scopes is not None:
            new = _scope_map(scopes)
            for s, text in found.scopes.items():
                if s in new and not new[s]:
                    new[s] = text  # keep the description when only names are given
            found.scopes = new
            found.default_scopes = tuple(s for s in found.default_scopes if s in new)
        if default_scopes is not None:
            found.default_scopes = tuple(_scopes(default_scopes))
        if access_token_ttl is not None or clear_ttl:
            found.access_token_ttl = None if clear_ttl else access_token_ttl
        if encryption_key is not None or clear_encryption:
            found.encryption_key = None if clear_encryption else dict(encryption_key or {})
        await self._validate(found)
        await self.store.update_resource(found)
        self._changed()
        return found

    async def list(self) -> list[Resource]:
        return await self.store.list_resources()

    async def remove(self, identifier: str) -> None:
        if not await self.store.delete_resource(identifier):
            raise NotFound(f"no resource {identifier!r}")
        self._changed()


def _scope_map(value: str | Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(value, Mapping):
        names = _scopes(list(value))
        out = {s: str(value[s] or "") for s in names}
    else:
        out = dict.fromkeys(_scopes(value), "")
    for s, text in out.items():
        if len(text) > 200 or not text.isprintable():
            raise ConfigurationError(f"the description of {s!r} is 0-200 printable characters")
    return out


def public_encryption_key(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's encryption key: a public P-256 JWK for ECDH-ES+A256KW (never a private
    one: the resource server keeps that)."""
    from ..jwe import TokenEncryption

    if "d" in jwk:
        raise ConfigurationError("give the resource's PUBLIC encryption key (this JWK has 'd')")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ConfigurationError("the encryption key must be an EC P-256 JWK (ECDH-ES+A256KW)")
    TokenEncryption.ecdh_es(jwk)  # raises ConfigurationError for a bad point
    return {k: jwk[k] for k in ("kty", "crv", "x", "y", "kid") if k in jwk}


# -- roles ---------------------------------------------------------------------------------------
class RoleRegistry:
    def __init__(
        self, store: Store, *, issuer: str, on_change: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.on_change = on_change  # called after every change (drops cached copies)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _checked(self, name: str, scopes: str | Iterable[str]) -> list[str]:
        if not _NAME.match(name or ""):
            raise ConfigurationError(
                "a role name is 1-64 characters: letters, digits and . _ : - (not first)"
            )
        wanted = _scopes(scopes)
        _check_defined(wanted, await catalog_of(self.store, self.issuer), f"role {name!r}")
        return wanted

    async def add(
        self, name: str, scopes: str | Iterable[str], *, description: str | None = None
    ) -> Role:
        role = Role(name, time.time(), tuple(await self._checked(name, scopes)), description)
        try:
            await self.store.create_role(role)
        except AlreadyExists:
            raise AlreadyExists(f"role {name!r} exists") from None
        self._changed()
        return role

    async def set(self, name: str, scopes: str | Iterable[str]) -> tuple[Role, Role]:
        """Replace the role's scopes; returns (before, after)."""
        before = await self.store.get_role(name)
        if before is None:
            raise NotFound(f"no role {name!r}")
        after = replace(before, scopes=tuple(await self._checked(name, scopes)))
        await ensure_an_admin_remains(self.store, roles={name: after})
        await self.store.update_role(after)
        self._changed()
        return before, after

    async def remove(self, name: str) -> Role:
        before = await self.store.get_role(name)
        if before is None:
            raise NotFound(f"no role {name!r}")
        await ensure_an_admin_remains(self.store, roles={name: None})
        await self.store.delete_role(name)
        self._changed()
        return before

    async def list(self) -> list[Role]:
        return await self.store.list_roles()

    async def set_user_roles(self, username: str, roles: str | Iterable[str]) -> tuple[User, User]:
        """Give a user exactly ``roles``; returns (before, after)."""
        names = [r.strip() for r in (roles.split(",") if isinstance(roles, str) else roles)]
        names = list(dict.fromkeys(n for n in names if n))
        user = await self.store.get_user(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        await check_roles(self.store, names)
        after = replace(user, roles=tuple(names), is_admin=ADMIN_ROLE in names)
        await ensure_an_admin_remains(self.store, users={username: after})
        await self.store.update_user(after)
        return user, after


async def ensure_an_admin_remains(
    store: AccountStore,
    *,
    users: Mapping[str, User | None] | None = None,
    roles: Mapping[str, Role | None] | None = None,
) -> None:
    """The one rule against locking everybody out: raise :class:`LastAdmin` when a change
    would leave no active user holding the ``admin`` scope where one held it before.

    ``users``/``roles`` describe the change (username or role name → the record after it,
    ``None`` for a removal). A user is an administrator through their roles (the ``admin``
    role, or any role carrying the ``admin`` scope); a store without roles (an
    :class:`~tokenward.store.base.AccountStore` only) counts ``is_admin``. This covers
    disabling, removing or demoting a user, ``user roles`` without ``admin``, removing the
    ``admin`` role and removing the ``admin`` scope from a role. A fresh store (no
    administrator yet) accepts anything.
    """
    all_users = await store.list_users()
    if isinstance(store, AuthorizationStore):
        all_roles = {r.name: r for r in await store.list_roles()}
    else:
        implicit = Role(ADMIN_ROLE, 0.0, ("admin",))
        all_roles = {ADMIN_ROLE: implicit}
        all_users = [replace(u, roles=(ADMIN_ROLE,) if u.is_admin else ()) for u in all_users]
        users = {
            k: (replace(u, roles=(ADMIN_ROLE,) if u.is_admin else ()) if u else None)
            for k, u in (users or {}).items()
        }

    def admins(role_map: Mapping[str, Role], user_list: Iterable[User]) -> int:
        return sum(
            1 for u in user_list if not u.disabled and "admin" in entitlement(u.roles, role_map)
        )

    if admins(all_roles, all_users) == 0:
        return
    new_roles: dict[str, Role] = dict(all_roles)
    for name, role in (roles or {}).items():
        if role is None:
            new_roles.pop(name, None)
        else:
            new_roles[name] = role
    new_users: list[User] = []
    for u in all_users:
        if users is not None and u.username in users:
            changed = users[u.username]
            if changed is not None:
                new_users.append(changed)
        else:
            new_users.append(u)
    if admins(new_roles, new_users) == 0:
        raise LastAdmin(
            "the last active admin cannot be disabled, removed or demoted: this would leave "
            "no active administrator"
        )


async def check_roles(store: Store, names: Iterable[str]) -> None:
    """Every role named exists."""
    known = {r.name for r in await store.list_roles()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(f"no role {unknown[0]!r} (tokenward role add …)")


# -- client permissions ----------------------------------------------------------------------
def check_client_permissions(
    catalog: Catalog, resources: Sequence[str], scopes: Sequence[str]
) -> None:
    """Every resource exists and every scope is defined by one of them (the OIDC scopes go
    with any resource)."""
    for r in resources:
        if catalog.get(r) is None:
            raise ConfigurationError(f"no resource {r!r} (tokenward resource add …)")
    for s in scopes:
        owner = catalog.owner.get(s)
        if owner is None:
            raise ConfigurationError(f"no resource defines the scope {s!r}")
        if owner not in resources and s not in OIDC_SCOPES:
            raise ConfigurationError(f"scope {s!r} belongs to {owner}, not to --resources")


# -- the decision, with the store's data -------------------------------------------------------
#: How long a refresh may use the resources and role definitions it read (seconds). Changes
#: made through this process's registries drop them at once; a change made elsewhere (the
#: CLI, another instance) reaches this instance's refreshes within this time.
REFRESH_MODEL_TTL = 1.0


@dataclass(slots=True)
class Authorizer:
    """Loads resources, roles and the user's entitlement, then decides (pure functions).

    New grants read the model from the store every time. A refresh — the hot path — uses a
    copy of the resources and role definitions at most :data:`REFRESH_MODEL_TTL` seconds
    old (:meth:`invalidate` drops it; the registries of this process call it on every
    change); the session's client and user are always current (the caller passes the
    client it authenticated in this request and the user it read for this refresh)."""

    store: Store
    issuer: str
    default_resource: str
    console_client_id: str | None = None
    model_ttl: float = REFRESH_MODEL_TTL
    monotonic: Callable[[], float] = time.monotonic
    _model: tuple[float, Catalog, dict[str, Role]] | None = field(
        default=None, init=False, repr=False
    )

    def invalidate(self) -> None:
        """Forget the refresh path's copy of resources and roles (after a change)."""
        self._model = None

    async def _refresh_model(self) -> tuple[Catalog, dict[str, Role]]:
        now = self.monotonic()
        model = self._model
        if model is not None and now - model[0] < self.model_ttl:
            return model[1], model[2]
        catalog = await self.catalog()
        roles = {r.name: r for r in await self.store.list_roles()}
        if self._model is model:  # not invalidated meanwhile
            self._model = (now, catalog, roles)
        return catalog, roles

    def effective(self, client: Client) -> Client:
        """The console's own client always has the console's permissions (its scopes, this
        server as its one resource), whatever the issuer was when it was registered."""
        if client.client_id == self.console_client_id:
            return replace(client, scopes=CONSOLE_SCOPES, resources=(self.issuer,))
        return client

    async def catalog(self) -> Catalog:
        return await catalog_of(self.store, self.issuer)

    async def entitled(self, user: User | None) -> frozenset[str] | None:
        if user is None:
            return None
        roles = {}
        for name in user.roles:
            role = await self.store.get_role(name)
            if role is not None:
                roles[name] = role
        return entitlement(user.roles, roles)

    def default_for(self, client: Client) -> str | None:
        """The resource when none is asked: the default resource if the client may ask
        for it, else the client's only resource, else the default (refused as unknown)."""
        if self.default_resource in client.resources or len(client.resources) != 1:
            return self.default_resource
        return client.resources[0]

    async def grant(
        self,
        *,
        scope: str | None,
        resources: Sequence[str],
        client: Client,
        user: User | None,
        max_resources: int | None = 1,
    ) -> tuple[Grant, Catalog]:
        catalog = await self.catalog()
        client = self.effective(client)
        decided = authorize(
            scope=scope,
            resources=resources,
            client=client,
            entitled=await self.entitled(user),
            catalog=catalog,
            default_resource=self.default_for(client),
            max_resources=max_resources,
        )
        return decided, catalog

    async def refresh(
        self,
        family: Family,
        *,
        scope: str | None,
        resource: str | None,
        client: Client | None = None,
        user: User | None = None,
    ) -> tuple[Grant, Catalog]:
        """The refreshed token's grant (fail closed when the client or user is gone).

        ``client``: the session's client as authenticated in this request; ``user``: the
        session's user as read in this refresh. Either is read from the store when not
        given (or not the session's)."""
        from ..errors import InvalidGrant

        if client is None or client.client_id != family.client_id:
            client = await self.store.get_client(family.client_id)
            if client is None:
                raise InvalidGrant("the client of this session no longer exists")
        client = self.effective(client)
        if user is None or user.username != family.sub:
            user = await self.store.get_user(family.sub)
        if user is None or user.disabled:
            raise InvalidGrant("the user of this session no longer exists or is disabled")
        catalog, roles = await self._refresh_model()
        decided = reauthorize(
            granted_scope=family.scope,
            scope=scope,
            resource=resource,
            client=client,
            entitled=entitlement(user.roles, roles),
            catalog=catalog,
        )
        return decided, catalog

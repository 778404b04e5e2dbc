"""The authorization decision: which scope a token gets and for which audience. Pure (no I/O).

The model: a **resource** (RFC 8707 §2, an API) defines scopes and becomes the token's
``aud``; a **client** lists the resources it may ask for and the scopes it may receive; a
**user** is entitled to the scopes of their roles. The server itself is a resource whose
identifier is the issuer, with the reserved scopes of :data:`SERVER_SCOPES`.

:func:`authorize` (a new grant: password, client credentials, ``/login``, ``/authorize``):

* resource: the ``resource`` parameters, at most ``max_resources`` of them (one at
  ``/token`` and ``/login``); without one, the resource that defines the requested scopes
  (one resource, not counting the OIDC scopes), else the default resource; an unknown
  resource, one the client may not ask for, scopes of several resources, or no resource at
  all → ``invalid_target`` (RFC 8707 §2);
* a requested scope that no resource defines, that belongs to none of the requested
  resources, or that the client may not receive → ``invalid_scope`` (RFC 6749 §5.2);
* a requested scope the user is not entitled to is dropped silently: the response's
  ``scope`` says what was granted (RFC 6749 §3.3);
* no ``scope`` requested: the resources' default scopes ∩ the client's ∩ the user's;
* nothing granted → ``invalid_scope``.

So ``granted ⊆ requested ∩ client ∩ entitled`` (for ``client_credentials`` the client's own
scopes stand for the entitlement). The OIDC scopes (``openid profile offline_access``) may
accompany any resource and every user is entitled to them; with ``openid`` granted the
issuer joins the audience (``aud = [R, issuer]``).

:func:`reauthorize` (a refresh): the session's scope, fixed at grant time, narrowed by what
the client and the user may have *now*; nothing left → ``invalid_grant``. A refresh may ask
for a token for another resource the grant covers and for less scope, never for more.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidGrant, InvalidScope, InvalidTarget
from ..store.base import Client, Resource, Role

__all__ = [
    "OIDC_SCOPES",
    "RESERVED_SCOPES",
    "SERVER_SCOPES",
    "Catalog",
    "Grant",
    "authorize",
    "entitlement",
    "parse_scope",
    "reauthorize",
    "server_resource",
    "session_resources",
]

SERVER_SCOPES: Mapping[str, str] = {
    "admin": "administer tokenward (users, clients, resources, roles, sessions, keys)",
    "revocations": "read the revocation feed",
    "ssf": "manage Shared Signals streams",
    "openid": "sign in with OpenID Connect",
    "profile": "read the user's profile",
    "offline_access": "stay signed in (refresh tokens)",
}
RESERVED_SCOPES = frozenset(SERVER_SCOPES)
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access"})

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 §3.3 scope-token
_MAX_SCOPES = 32


def parse_scope(value: str | None) -> list[str]:
    """The scope tokens of a ``scope`` parameter (RFC 6749 §3.3), de-duplicated, in order;
    ``[]`` for ``None`` or blank. A malformed one → ``invalid_scope``."""
    if value is None or not value.strip():
        return []
    items = value.split(" ")
    if len(items) > _MAX_SCOPES or any(not _SCOPE_TOKEN.match(s) for s in items):
        raise InvalidScope("malformed scope")
    return list(dict.fromkeys(items))


def server_resource(issuer: str, *, access_token_ttl: int | None = None) -> Resource:
    """The server itself as a resource: identifier = issuer, the reserved scopes."""
    return Resource(
        identifier=issuer,
        name="tokenward",
        created_at=0.0,
        scopes=dict(SERVER_SCOPES),
        default_scopes=("openid", "profile"),
        access_token_ttl=access_token_ttl,
    )


class Catalog:
    """Every resource (the server's included) and which resource defines each scope."""

    def __init__(self, resources: Iterable[Resource], *, issuer: str) -> None:
        self.issuer = issuer
        self.resources: dict[str, Resource] = {}
        self.owner: dict[str, str] = {}
        for r in resources:
            self.resources[r.identifier] = r
        if issuer not in self.resources:
            self.resources[issuer] = server_resource(issuer)
        for r in self.resources.values():
            for s in r.scopes:
                self.owner.setdefault(s, r.identifier)  # stores refuse a second definition

    def get(self, identifier: str) -> Resource | None:
        return self.resources.get(identifier)

    def scopes_supported(self) -> list[str]:
        return sorted(self.owner)


def entitlement(user_roles: Iterable[str], roles: Mapping[str, Role]) -> frozenset[str]:
    """The scopes a user holds: those of their roles (unknown role names give nothing),
    plus the OIDC scopes (the user's own data)."""
    out = set(OIDC_SCOPES)
    for name in user_roles:
        role = roles.get(name)
        if role is not None:
            out.update(role.scopes)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Grant:
    """What was granted: ``scope`` (in order) for ``resources``; ``issuer`` joins the
    audience when ``openid`` is granted."""

    scope: tuple[str, ...]
    resources: tuple[str, ...]
    issuer: str

    @property
    def scope_text(self) -> str:
        return " ".join(self.scope)

    @property
    def resource(self) -> str:
        """The token's resource: the first (at ``/token`` and ``/login``, the only) one."""
        return self.resources[0]

    def audience(self, resource: str | None = None) -> str | list[str]:
        """The ``aud`` claim of an access token for ``resource`` (default: the first)."""
        r = resource if resource is not None else self.resource
        if "openid" in self.scope and r != self.issuer:
            return [r, self.issuer]
        return r


def _client_may(client: Client, scope: str, catalog: Catalog) -> bool:
    if scope not in client.scopes:
        return False
    owner = catalog.owner.get(scope)
    return owner is not None and (owner in client.resources or scope in OIDC_SCOPES)


def _fits(scope: str, resources: Collection[str], catalog: Catalog) -> bool:
    """May ``scope`` appear in a token for ``resources``?"""
    return catalog.owner.get(scope) in resources or scope in OIDC_SCOPES


def _targets(
    requested: Sequence[str],
    scopes: Sequence[str],
    client: Client,
    catalog: Catalog,
    default_resource: str | None,
    max_resources: int | None,
) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(requested))
    if max_resources is not None and len(wanted) > max_resources:
        raise InvalidTarget(f"at most {max_resources} resource parameter(s) here")
    if not wanted:
        owners = {catalog.owner.get(s) for s in scopes if s not in OIDC_SCOPES}
        owners.discard(None)
        if len(owners) > 1:
            raise InvalidTarget("the scopes belong to several resources: name one (resource)")
        if owners:
            wanted = (str(owners.pop()),)
        elif default_resource is None:
            raise InvalidTarget("no resource given and no default resource is configured")
        else:
            wanted = (default_resource,)
    for r in wanted:
        if catalog.get(r) is None:
            raise InvalidTarget(f"unknown resource {r[:200]!r}")
        if r not in client.resources:
            raise InvalidTarget(f"this client may not ask for resource {r[:200]!r}")
    return wanted


def authorize(
    *,
    scope: str | None,
    resources: Sequence[str],
    client: Client,
    entitled: Collection[str] | None,
    catalog: Catalog,
    default_resource: str | None,
    max_resources: int | None = 1,
) -> Grant:
    """The grant for a new authorization (see the module docstring).

    ``scope``: the raw ``scope`` parameter (``None`` when absent); ``resources``: the
    ``resource`` parameters; ``entitled``: the user's scopes (:func:`entitlement`), or
    ``None`` for ``client_credentials`` (no user: the client's own scopes count);
    ``max_resources``: 1 at ``/token`` and ``/login``, ``None`` (any) at ``/authorize``.
    """
    wanted = parse_scope(scope)
    targets = _targets(resources, wanted, client, catalog, default_resource, max_resources)
    granted: list[str] = []
    if wanted:
        for s in wanted:
            owner = catalog.owner.get(s)
            if owner is None:
                raise InvalidScope(f"no resource defines the scope {s!r}")
            if not _fits(s, targets, catalog):
                raise InvalidScope(f"scope {s!r} belongs to another resource ({owner[:200]})")
            if not _client_may(client, s, catalog):
                raise InvalidScope(f"scope {s!r} is not allowed for this client")
            if entitled is None or s in entitled:
                granted.append(s)
    else:
        for r in targets:
            resource = catalog.resources[r]
            for s in resource.default_scopes:
                if (
                    s in resource.scopes
                    and _client_may(client, s, catalog)
                    and (entitled is None or s in entitled)
                ):
                    granted.append(s)
    granted = list(dict.fromkeys(granted))
    if not granted:
        if wanted:
            raise InvalidScope("none of the requested scopes is granted to this user")
        raise InvalidScope("no scope requested and no default scope is granted")
    return Grant(tuple(granted), targets, catalog.issuer)


def session_resources(scope: Iterable[str], catalog: Catalog) -> tuple[str, ...]:
    """The resources a session's scope covers, in scope order (a scope names its resource;
    the OIDC scopes count for the server only when nothing else does)."""
    found: list[str] = []
    oidc = False
    for s in scope:
        owner = catalog.owner.get(s)
        if owner is None:
            continue
        if s in OIDC_SCOPES:
            oidc = True
        elif owner not in found:
            found.append(owner)
    if not found and oidc:
        found.append(catalog.issuer)
    return tuple(found)


def reauthorize(
    *,
    granted_scope: str,
    scope: str | None,
    resource: str | None,
    client: Client,
    entitled: Collection[str] | None,
    catalog: Catalog,
) -> Grant:
    """The token of a refresh: ``granted_scope`` (the session's, fixed at grant time)
    narrowed by what the client and the user may have now; then optionally down-scoped to
    ``scope`` and to another ``resource`` the grant covers.

    Nothing left for the session → ``invalid_grant``; a ``resource`` the grant does not
    cover → ``invalid_target``; a ``scope`` beyond the grant → ``invalid_scope``.
    """
    original = granted_scope.split()
    current = [
        s
        for s in dict.fromkeys(original)
        if s in catalog.owner
        and _client_may(client, s, catalog)
        and (entitled is None or s in entitled)
    ]
    covered = session_resources(current, catalog)
    if not current or not covered:
        raise InvalidGrant("nothing of this session's scope is granted any more")
    if resource is None:
        target = covered[0]
    elif resource in covered:
        target = resource
    else:
        raise InvalidTarget(f"this session's grant does not cover {resource[:200]!r}")
    for_target = [s for s in current if _fits(s, (target,), catalog)]
    wanted = parse_scope(scope)
    if wanted:
        beyond = [s for s in wanted if s not in original]
        if beyond:
            raise InvalidScope(f"scope {beyond[0]!r} exceeds the granted scope")
        for_target = [s for s in for_target if s in wanted]
        if not for_target:
            raise InvalidScope("none of the requested scopes is still granted")
    if not for_target:
        raise InvalidGrant("nothing of this session's scope is granted for this resource")
    return Grant(tuple(for_target), (target,), catalog.issuer)

"""OAuth clients: confidential (secret hashed at rest, shown once) or public.

A client secret is 256 random bits, so a fast hash is enough at rest (no dictionary attack
is possible against it); it is SHA-256 and compared with :func:`hmac.compare_digest`.

Lifecycle: a client can be disabled (refused at authentication; the caller revokes its
sessions, :meth:`ClientRegistry.session_ids`), enabled again, removed (disabled, its sessions
revoked, then deleted) and re-keyed (:meth:`ClientRegistry.rotate_secret`: a new secret, shown
once; with an overlap the old secret keeps working until the overlap ends, so deployments can
roll over without downtime).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import replace

from ..clock import Clock, system_clock
from ..errors import ConfigurationError, InvalidClient, NotFound
from ..store.base import Client, Store
from .cache import RecordCache
from .grants.registry import GRANTS
from .redirect_uris import validate_redirect_uri

__all__ = [
    "DEVICE_CODE_GRANT",
    "ClientRegistry",
    "check_usable_grants",
    "hash_secret",
    "require_redirect_uris",
    "verify_secret",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

#: Grants that only renew what another grant issued first.
_RENEWING = frozenset({"refresh_token"})


def check_usable_grants(grants: Iterable[str], *, public: bool) -> None:
    """Refuse a grant set with which a client can never obtain its first token (e.g.
    ``refresh_token`` alone: nothing ever issues the first refresh token)."""
    usable = [g for g in grants if g not in _RENEWING]
    if not usable:
        starters = [
            g
            for g, info in GRANTS.items()
            if g not in _RENEWING and not (public and info.confidential_only)
        ]
        raise ConfigurationError(
            f"grants {list(grants)} cannot obtain a first token: add one of "
            f"{', '.join(starters)} (refresh_token only renews)"
        )


_PREFIX = "sha256$"
_MAX_ID = 256
_MAX_SECRET = 512


def hash_secret(secret: str) -> str:
    return _PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret_hash: str, secret: str) -> bool:
    if not secret_hash.startswith(_PREFIX):
        return False
    want = secret_hash[len(_PREFIX) :].encode()
    got = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest().encode()
    return hmac.compare_digest(want, got)


# A fixed hash to compare against when the client is unknown, so both paths do the same work.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(32))


class ClientRegistry:
    """Register and authenticate clients kept in a :class:`Store` (its sessions are families)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock,
        cache: RecordCache[str, Client] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        #: client records for the hot paths (``cached=True``); dropped on every client write
        #: of this process (:func:`tokenward.server.cache.watch_writes`)
        self.cache = cache

    async def create(
        self,
        client_id: str,
        *,
        public: bool = False,
        grants: Iterable[str] = ("password", "refresh_token"),
        scopes: Iterable[str] = (),
        name: str | None = None,
        redirect_uris: Iterable[str] = (),
        first_party: bool = False,
        post_logout_redirect_uris: Iterable[str] = (),
        backchannel_logout_uri: str | None = None,
        resources: Iterable[str] = (),
        dpop_bound_access_tokens: bool = False,
    ) -> tuple[Client, str | None]:
        """Register a client; returns it and its secret (``None`` for public clients).
        The secret is shown only here: the store keeps its hash.

        ``redirect_uris`` are required with the ``authorization_code`` grant (matched exactly,
        loopback with any port); ``first_party`` clients skip the consent page;
        ``post_logout_redirect_uris`` are where RP-initiated logout may return to;
        ``backchannel_logout_uri`` receives OpenID Connect back-channel logout tokens."""
        if not client_id or len(client_id) > _MAX_ID or not client_id.isprintable():
            raise ConfigurationError("a client_id is 1-256 printable characters")
        if ":" in client_id:
            raise ConfigurationError("a client_id may not contain ':' (HTTP Basic)")
        grant_list = tuple(dict.fromkeys(g.strip() for g in grants if g.strip()))
        unknown = [g for g in grant_list if g not in GRANTS]
        if unknown:
            raise ConfigurationError(f"unknown grant(s) {unknown}; use {', '.join(GRANTS)}")
        for g in grant_list:
            if public and GRANTS[g].confidential_only:
                raise ConfigurationError(f"a public client cannot use {g}")
        check_usable_grants(grant_list, public=public)
        redirects = _uris(redirect_uris, "redirect URI")
        post_logout = _uris(post_logout_redirect_uris, "post-logout redirect URI")
        if backchannel_logout_uri is not None:
            backchannel_logout_uri = backchannel_logout_uri.strip() or None
        if backchannel_logout_uri is not None:
            why = _backchannel_problem(backchannel_logout_uri)
            if why is not None:
                raise ConfigurationError(why)
        secret = None if public else secrets.token_urlsafe(32)
        client = Client(
            client_id=client_id,
            created_at=self.clock.now(),
            secret_hash=None if secret is None else hash_secret(secret),
            grants=grant_list,
            scopes=tuple(dict.fromkeys(s for s in scopes if s)),
            name=name,
            redirect_uris=redirects,
            post_logout_redirect_uris=post_logout,
            first_party=bool(first_party),
            backchannel_logout_uri=backchannel_logout_uri,
            resources=tuple(dict.fromkeys(r for r in resources if r)),
            dpop_bound_access_tokens=dpop_bound_access_tokens,
        )
        await self.store.create_client(client)
        return client, secret

    async def set_permissions(
        self,
        client_id: str,
        *,
        resources: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
    ) -> tuple[Client, Client]:
        """Replace the resources and/or scopes a client may get; returns (before, after).
        (Whether the scopes exist is checked by the caller, which knows the resources.)"""
        before = await self.get(client_id)
        if before is None:
            raise NotFound(f"no client {client_id!r}")
        after = replace(before)
        if resources is not None:
            after.resources = tuple(dict.fromkeys(r for r in resources if r))
        if scopes is not None:
            after.scopes = tuple(dict.fromkeys(s for s in scopes if s))
        await self.store.update_client(after)
        return before, after

    async def update(
        self, client_id: str, *, dpop_bound_access_tokens: bool | None = None
    ) -> Client:
        """Change a client's settings; ``NotFound`` for an unknown client."""
        client = await self.get(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}")
        if dpop_bound_access_tokens is not None:
            client.dpop_bound_access_tokens = dpop_bound_access_tokens
        await self.store.update_client(client)
        return client

    async def get(self, client_id: str, *, cached: bool = False) -> Client | None:
        """The client; with ``cached``, a record at most ``record_cache_ttl`` old."""
        if not client_id or len(client_id) > _MAX_ID or "\x00" in client_id:
            return None
        return await self._load(client_id, cached)

    async def _load(self, client_id: str, cached: bool) -> Client | None:
        if cached and self.cache is not None:
            return await self.cache.get(client_id, self.store.get_client)
        return await self.store.get_client(client_id)

    async def list(self) -> list[Client]:
        return await self.store.list_clients()

    async def _existing(self, client_id: str) -> Client:
        client = await self.get(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}")
        return client

    async def set_disabled(self, client_id: str, disabled: bool = True) -> Client:
        """Disable (or enable) a client. The caller revokes a disabled client's sessions."""
        client = replace(await self._existing(client_id), disabled=disabled)
        await self.store.update_client(client)
        return client

    async def rotate_secret(self, client_id: str, *, overlap: float = 0.0) -> str:
        """A new secret for a confidential client, returned once; with ``overlap`` seconds
        the old secret is still accepted until then (0: refused at once)."""
        if overlap < 0:
            raise ConfigurationError("the overlap must be >= 0 seconds")
        client = await self._existing(client_id)
        if client.public or client.secret_hash is None:
            raise ConfigurationError(f"client {client_id!r} is public: it has no secret")
        secret = secrets.token_urlsafe(32)
        keep = overlap > 0
        client = replace(
            client,
            secret_hash=hash_secret(secret),
            previous_secret_hash=client.secret_hash if keep else None,
            previous_secret_expires_at=self.clock.now() + overlap if keep else None,
        )
        await self.store.update_client(client)
        return secret

    async def delete(self, client_id: str) -> bool:
        return await self.store.delete_client(client_id)

    async def session_ids(self, client_id: str) -> builtins.list[str]:
        """The live sessions (``sid``) issued to ``client_id``: every user's families are
        looked at (sessions belong to users), so the cost grows with the number of users."""
        return [
            family.sid
            for user in await self.store.list_users()
            for family in await self.store.list_families(user.username)
            if family.client_id == client_id
        ]

    async def authenticate(
        self, client_id: str, secret: str | None, *, cached: bool = False
    ) -> Client:
        """Check a client's credentials. ``secret=None`` identifies a public client.

        Raises ``InvalidClient`` for an unknown client, a wrong secret, a confidential
        client without its secret, and a secret presented for a public client. With
        ``cached`` the record may be up to ``record_cache_ttl`` old (only the stored *hash*
        is cached: the presented secret is hashed and compared in constant time every time).
        """
        if (
            len(client_id) > _MAX_ID
            or "\x00" in client_id  # never registered (printable); PostgreSQL refuses NUL
            or (secret is not None and len(secret) > _MAX_SECRET)
        ):
            raise InvalidClient("client authentication failed")
        client = await self._load(client_id, cached)
        if secret is None:
            if client is None or not client.public or client.disabled:
                raise InvalidClient("client authentication failed")
            return client
        stored = client.secret_hash if client is not None else None
        ok = verify_secret(stored or _DUMMY_HASH, secret)
        if not ok and client is not None and client.previous_secret_hash is not None:
            until = client.previous_secret_expires_at or 0.0
            ok = verify_secret(client.previous_secret_hash, secret) and self.clock.now() < until
        if client is None or stored is None or not ok or client.disabled:
            raise InvalidClient("client authentication failed")
        return client


_MAX_URIS = 32


def require_redirect_uris(grants: Iterable[str], redirect_uris: Iterable[str]) -> None:
    """The CLI's and admin API's rule: a client registered for the authorization code flow
    names its redirect URIs (without them ``/authorize`` can only show an error page)."""
    if "authorization_code" in grants and not any(u.strip() for u in redirect_uris):
        raise ConfigurationError("the authorization_code grant needs --redirect-uris")


def _uris(values: Iterable[str], what: str) -> tuple[str, ...]:
    uris = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(uris) > _MAX_URIS:
        raise ConfigurationError(f"at most {_MAX_URIS} of each kind of redirect URI")
    for uri in uris:
        why = validate_redirect_uri(uri)
        if why is not None:
            raise ConfigurationError(f"{what}: {why}")
    return uris


def _backchannel_problem(uri: str) -> str | None:
    """A back-channel logout URI is an absolute http(s) URI without a fragment (OpenID
    Connect Back-Channel Logout 1.0 §2.2); whether private/loopback or plain-http targets may
    be reached is decided at delivery time (``TOKENWARD_OUTBOUND_ALLOW_PRIVATE``)."""
    from urllib.parse import urlsplit

    if len(uri) > 2000 or not uri.isprintable() or " " in uri:
        return "a back-channel logout URI is 1-2000 printable characters"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"{uri!r} is not a valid URI"
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        return f"{uri!r}: a back-channel logout URI is an absolute https URI without fragment"
    return None

"""The one storage contract: :class:`Store`, and the records it keeps.

Every backend (``memory://``, ``sqlite://``, ``redis://``, ``postgresql://``) implements
:class:`Store` and passes the one conformance suite (``tests/store/test_conformance.py``).
The contract is split by capability, so that a store that only needs part of it implements
only that part::

    BaseStore                 open/close, ping, schemes
    ├── RevocationFeedStore   the revocation feed (a denylist mirror follows it)
    │   └── RefreshTokenStore families, rotation, revoking, purge
    ├── KeyBlobStore          the encrypted key set, named secrets
    ├── AccountStore          users and clients
    ├── ReplayCacheStore      one-time keys (DPoP proof ids)
    └── AttemptCounterStore   moving-window attempt counters (login limits)
    SessionStore = RefreshTokenStore + KeyBlobStore   (what SessionManager needs)
    Store        = SessionStore + AccountStore + ReplayCacheStore + AttemptCounterStore
                   (what the server needs)

Atomicity is the backend's job: each method is one transaction (or one Lua script). The
lifecycle *policy* (expiry, client binding, scope) lives in :mod:`tokenward.sessions`; the
store only decides what must be decided atomically, which is :meth:`Store.rotate`:

* ``ROTATED`` — the presented token was the family's live leaf and unconsumed: it is now
  consumed (compare-and-set), ``child`` is inserted and becomes the leaf;
* ``GRACE`` — the presented token is the *immediate parent* of the live leaf, it was consumed
  at most ``grace`` seconds ago, and ``child.token_hash`` equals the stored successor (the
  successor is derived deterministically, so the caller can hand out the same one again);
  nothing changes except ``last_used_at``;
* ``REUSED`` — anything else for a known token of a live family: the family is revoked and a
  ``sid`` revocation event appended **in the same transaction** (the caller then fails);
* ``REVOKED`` — the family was already revoked; ``NOT_FOUND`` — unknown token hash.

Token hashes are ``bytes`` (SHA-256 of the token); raw refresh tokens never reach a store.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

from ..feed import RevocationEvent, RevocationKind

__all__ = [
    "AccountStore",
    "AttemptCounterStore",
    "AuthorizationStore",
    "BaseStore",
    "Client",
    "Family",
    "GrantRecord",
    "GrantRecordStore",
    "KeyBlobStore",
    "PurgeCounts",
    "RefreshTokenRecord",
    "RefreshTokenStore",
    "Resource",
    "RevocationEvent",
    "RevocationFeedStore",
    "RevocationKind",
    "Role",
    "RotationOutcome",
    "RotationResult",
    "SessionStore",
    "Store",
    "User",
    "decide_rotation",
]


@dataclass(slots=True)
class Family:
    """A refresh-token family = one session (``sid``)."""

    sid: str
    sub: str
    client_id: str
    scope: str
    created_at: float
    last_used_at: float
    expires_at: float  # absolute lifetime end
    idle_expires_at: float  # last_used_at + idle timeout
    current_hash: bytes  # the live leaf
    generation: int = 0
    user_agent: str | None = None
    ip: str | None = None
    device: str | None = None
    revoked_at: float | None = None
    revoked_reason: str | None = None
    dpop_jkt: str | None = None  # RFC 9449 §5: the refresh token is bound to this key

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at or now >= self.idle_expires_at


@dataclass(slots=True)
class RefreshTokenRecord:
    token_hash: bytes
    sid: str
    created_at: float
    parent_hash: bytes | None = None
    consumed_at: float | None = None
    successor_hash: bytes | None = None


class RotationOutcome(StrEnum):
    ROTATED = "rotated"
    GRACE = "grace"
    REUSED = "reused"
    REVOKED = "revoked"
    NOT_FOUND = "not_found"


def decide_rotation(
    *,
    family_revoked: bool,
    current_hash: bytes,
    parent_hash: bytes,
    consumed_at: float | None,
    successor_hash: bytes | None,
    child_hash: bytes,
    now: float,
    grace: float,
) -> RotationOutcome:
    """The outcome of presenting ``parent_hash`` (a known token of a known family), from the
    records alone. Every backend decides with this rule: memory and SQL call it, the Redis
    Lua script mirrors it line by line (``DECIDE_ROTATION`` in its scripts), and the
    conformance tests check the three agree. ``NOT_FOUND`` is the caller's (no record).

    * the family is revoked → ``REVOKED``;
    * the token is unconsumed and is the family's live leaf → ``ROTATED``;
    * it was consumed at most ``grace`` seconds ago and its successor is both the live leaf
      and the presented child (the deterministic successor) → ``GRACE``;
    * anything else → ``REUSED``.
    """
    if family_revoked:
        return RotationOutcome.REVOKED
    if consumed_at is None and hmac.compare_digest(current_hash, parent_hash):
        return RotationOutcome.ROTATED
    if (
        grace > 0
        and consumed_at is not None
        and successor_hash is not None
        and now - consumed_at <= grace
        and hmac.compare_digest(successor_hash, current_hash)
        and hmac.compare_digest(successor_hash, child_hash)
    ):
        return RotationOutcome.GRACE
    return RotationOutcome.REUSED


@dataclass(frozen=True, slots=True)
class RotationResult:
    outcome: RotationOutcome
    family: Family | None = None
    event: RevocationEvent | None = None  # the sid event appended on REUSED


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    refresh_tokens: int = 0
    families: int = 0
    revocations: int = 0


@dataclass(slots=True)
class User:
    username: str
    password_hash: str
    created_at: float
    is_admin: bool = False  # kept equal to ``"admin" in roles`` by the server
    disabled: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] = ()


@dataclass(slots=True)
class Client:
    client_id: str
    created_at: float
    secret_hash: str | None = None  # None for public clients
    grants: tuple[str, ...] = ("refresh_token",)
    scopes: tuple[str, ...] = ()  # the scopes it may receive; empty means none
    name: str | None = None
    dpop_bound_access_tokens: bool = False  # RFC 9449 §5.2: DPoP proofs required at /token
    disabled: bool = False  # refused at authentication (a leaked secret, a retired app)
    # after a secret rotation with an overlap: the old secret's hash, accepted until then
    previous_secret_hash: str | None = None
    previous_secret_expires_at: float | None = None
    # authorization code / OpenID Connect registration (empty for other clients)
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    first_party: bool = False
    backchannel_logout_uri: str | None = None
    resources: tuple[str, ...] = ()  # the resources (RFC 8707) it may ask tokens for

    @property
    def public(self) -> bool:
        return self.secret_hash is None


@dataclass(slots=True)
class GrantRecord:
    """A small record of the authorization-code and OpenID Connect flows: a sign-in session,
    an authorization code, a remembered consent, a device authorization, an outbound delivery.

    ``kind`` + ``key`` identify it; ``owner`` indexes it (a username, or ``""``); ``data`` is a
    JSON object; ``version`` is the compare-and-set counter (each successful update adds one);
    a record whose ``expires_at`` (seconds since the epoch) has passed is gone for every read.
    Secrets (codes, device codes) are stored by their hash: ``key`` is never a raw secret.
    """

    kind: str
    key: str
    owner: str
    data: dict[str, Any]
    expires_at: float | None = None  # None: kept until deleted
    version: int = 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(slots=True)
class Resource:
    """A protected API (RFC 8707 resource): its identifier becomes the tokens' ``aud``.

    ``scopes`` maps each scope it defines to a description; a scope name is defined by one
    resource only. ``encryption_key`` is a public JWK: tokens for it are then a signed JWT
    nested in a JWE to that key.
    """

    identifier: str
    name: str
    created_at: float
    scopes: dict[str, str] = field(default_factory=dict)
    default_scopes: tuple[str, ...] = ()
    access_token_ttl: int | None = None
    encryption_key: dict[str, Any] | None = None


@dataclass(slots=True)
class Role:
    """A named set of scopes (across resources) that users are given."""

    name: str
    created_at: float
    scopes: tuple[str, ...] = ()
    description: str | None = None


class BaseStore(ABC):
    """What every store has: a lifecycle (``async with store:``), a health check and the URL
    schemes it registers under. The capabilities below build on it; a backend (or a library
    user's own store) implements the ones it needs, and :class:`Store` is all of them."""

    #: URL scheme(s) the backend registers under, e.g. ``("sqlite",)``; they must match the
    #: registry in :mod:`tokenward.store` (a test checks it).
    schemes: tuple[str, ...] = ()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create/upgrade the schema. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent."""

    # -- health ----------------------------------------------------------------------------
    @abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the backend cannot be reached."""


class RevocationFeedStore(BaseStore):
    """The ordered revocation feed (what a denylist mirror follows)."""

    # -- revocation feed -------------------------------------------------------------------
    @abstractmethod
    async def add_revocation(
        self, kind: RevocationKind, value: str, *, now: float, until: float
    ) -> RevocationEvent:
        """Append one event (e.g. a ``jti``)."""

    @abstractmethod
    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        """Events with ``seq > cursor`` and ``until > now``, in ``seq`` order."""

    @abstractmethod
    async def revocation_cursor(self) -> int:
        """The highest ``seq`` ever appended (0 when none)."""

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        """Block up to ``timeout`` seconds for events after ``cursor``.

        The default polls; Redis (``XREAD BLOCK``) and PostgreSQL (``LISTEN``) override it.
        """
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            events = await self.revocations_after(cursor, now=now())
            if events:
                return events
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return []
            await asyncio.sleep(min(self.poll_interval, left))

    poll_interval: float = 0.2


class RefreshTokenStore(RevocationFeedStore):
    """Refresh-token families and their atomic rotation. Revoking a family appends to the
    feed in the same transaction, so this capability includes the feed."""

    # -- refresh tokens and families -------------------------------------------------------
    @abstractmethod
    async def create_family(self, family: Family, token: RefreshTokenRecord) -> None:
        """Insert a new family and its first refresh token (one transaction)."""

    @abstractmethod
    async def get_refresh_token(
        self, token_hash: bytes, *, sid: str | None = None
    ) -> tuple[RefreshTokenRecord, Family] | None:
        """The record for ``token_hash`` and its family, or ``None``.

        ``sid`` is the family the token names (tagged refresh tokens carry it): a token of
        another family is ``None``. A partitioned backend (Redis Cluster) needs it to find the
        token; without it only tokens issued in the untagged form are found there.
        """

    @abstractmethod
    async def rotate(
        self,
        parent_hash: bytes,
        child: RefreshTokenRecord,
        *,
        now: float,
        grace: float,
        idle_expires_at: float,
        revocation_until: float,
    ) -> RotationResult:
        """The atomic consume/grace/reuse decision described in the module docstring.

        ``child.sid`` is the parent's family (from the token or a prior lookup); a partitioned
        backend (Redis) finds the family by it, and looks it up by ``parent_hash`` when empty.

        On ``ROTATED`` the family's ``last_used_at``/``idle_expires_at``/``current_hash``/
        ``generation`` are updated; on ``GRACE`` only ``last_used_at``/``idle_expires_at``;
        on ``REUSED`` the family is revoked (reason ``"refresh_token_reuse"``) and a ``sid``
        event with ``until=revocation_until`` appended, all in one transaction.
        """

    @abstractmethod
    async def get_family(self, sid: str) -> Family | None: ...

    @abstractmethod
    async def list_families(self, sub: str, *, include_revoked: bool = False) -> list[Family]:
        """The subject's families, newest first."""

    @abstractmethod
    async def revoke_family(
        self, sid: str, *, now: float, reason: str, until: float
    ) -> RevocationEvent | None:
        """Revoke one family and append its ``sid`` event (one transaction).

        Returns the event, or ``None`` when the family is unknown or already revoked.
        """

    @abstractmethod
    async def revoke_subject(self, sub: str, *, now: float, until: float) -> list[RevocationEvent]:
        """Revoke every live family of ``sub`` (``sid`` events) and append a ``sub`` event
        whose ``at`` is the not-before watermark; one transaction. Returns all new events."""

    # -- retention -------------------------------------------------------------------------
    @abstractmethod
    async def purge(self, *, now: float, margin: float) -> PurgeCounts:
        """Delete families (and their tokens) whose absolute or idle expiry is older than
        ``now - margin``, and revocation events with ``until <= now``."""


class KeyBlobStore(BaseStore):
    """The encrypted signing-key set and named server secrets."""

    # -- keys and secrets ------------------------------------------------------------------
    @abstractmethod
    async def load_keys(self) -> bytes | None:
        """The stored key set (an encrypted blob), or ``None``."""

    @abstractmethod
    async def save_keys(self, blob: bytes) -> None: ...

    @abstractmethod
    async def get_or_create_secret(self, name: str, factory: Callable[[], bytes]) -> bytes:
        """A named server secret, created once with ``factory()`` (first writer wins)."""


class AccountStore(BaseStore):
    """Users and OAuth clients (used by the server)."""

    # -- users and clients (used by the server) --------------------------------------------
    @abstractmethod
    async def create_user(self, user: User) -> None:
        """Insert; raises ``AlreadyExists`` when the username exists."""

    @abstractmethod
    async def get_user(self, username: str) -> User | None: ...

    @abstractmethod
    async def update_user(self, user: User) -> None:
        """Replace; raises ``NotFound`` when the username does not exist."""

    @abstractmethod
    async def list_users(self) -> list[User]: ...

    @abstractmethod
    async def delete_user(self, username: str) -> bool:
        """Remove the user record; ``False`` when there was none. Its sessions are the
        caller's to revoke first."""

    @abstractmethod
    async def create_client(self, client: Client) -> None:
        """Insert; raises ``AlreadyExists`` when the client id exists."""

    @abstractmethod
    async def get_client(self, client_id: str) -> Client | None: ...

    @abstractmethod
    async def list_clients(self) -> list[Client]: ...

    @abstractmethod
    async def update_client(self, client: Client) -> None:
        """Replace; raises ``NotFound`` when the client id is unknown."""

    @abstractmethod
    async def delete_client(self, client_id: str) -> bool:
        """Delete a client record; ``False`` when there was none."""


class AuthorizationStore(BaseStore):
    """The authorization model: resources (APIs) and their scopes, roles (used by the server;
    users' roles and clients' resources live on their records)."""

    @abstractmethod
    async def create_resource(self, resource: Resource) -> None:
        """Insert; raises ``AlreadyExists`` when the identifier exists. (Whether its
        scopes clash with another resource's is checked by the caller.)"""

    @abstractmethod
    async def update_resource(self, resource: Resource) -> None:
        """Replace; raises ``NotFound`` when the identifier is unknown."""

    @abstractmethod
    async def get_resource(self, identifier: str) -> Resource | None: ...

    @abstractmethod
    async def list_resources(self) -> list[Resource]:
        """Every resource, by identifier."""

    @abstractmethod
    async def delete_resource(self, identifier: str) -> bool:
        """Delete; ``False`` when there was none."""

    @abstractmethod
    async def create_role(self, role: Role) -> None:
        """Insert; raises ``AlreadyExists`` when the name exists."""

    @abstractmethod
    async def update_role(self, role: Role) -> None:
        """Replace; raises ``NotFound`` when the name is unknown."""

    @abstractmethod
    async def get_role(self, name: str) -> Role | None: ...

    @abstractmethod
    async def list_roles(self) -> list[Role]:
        """Every role, by name."""

    @abstractmethod
    async def delete_role(self, name: str) -> bool:
        """Delete; ``False`` when there was none."""


class ReplayCacheStore(BaseStore):
    """A shared set of seen one-time keys (DPoP proof ids)."""

    @abstractmethod
    async def dpop_jti_seen(self, key: str, *, now: float, until: float) -> bool:
        """Atomically: ``True`` when ``key`` (a proof's replay key) is recorded and not yet
        expired at ``now``; otherwise record it until ``until`` and return ``False``. Shared
        by every instance on the store, so a proof is accepted once (RFC 9449 §11.1).
        Expired keys are removed by :meth:`purge` (Redis: by ``EXPIRE``)."""


class GrantRecordStore(BaseStore):
    """Small versioned records of the authorization-code and OpenID Connect flows (sign-in
    sessions, codes, consents, device authorizations, outbound deliveries)."""

    @abstractmethod
    async def create_record(self, record: GrantRecord, *, now: float) -> bool:
        """Insert ``record`` (its ``version`` becomes 0); ``False`` when ``kind``/``key`` exists
        and is not expired at ``now`` (an expired one is replaced)."""

    @abstractmethod
    async def get_record(self, kind: str, key: str, *, now: float) -> GrantRecord | None:
        """The record, or ``None`` when unknown or expired at ``now``."""

    @abstractmethod
    async def update_record(self, record: GrantRecord, *, now: float) -> bool:
        """Compare-and-set: replace ``data``/``expires_at``/``owner`` of the stored record whose
        ``version`` equals ``record.version`` (and is not expired), adding one to the stored
        version. ``False`` when it was changed meanwhile, deleted or expired (nothing written).
        This is how single use is made atomic (a code is consumed by exactly one caller)."""

    @abstractmethod
    async def delete_record(self, kind: str, key: str) -> bool:
        """``True`` when a record was deleted."""

    @abstractmethod
    async def list_records(self, kind: str, owner: str, *, now: float) -> list[GrantRecord]:
        """The unexpired records of ``kind`` indexed under ``owner``, in key order."""

    @abstractmethod
    async def purge_records(self, *, now: float) -> int:
        """Delete expired records; the number deleted (backends with native expiry may say 0)."""


class AttemptCounterStore(BaseStore):
    """Moving-window attempt counters: login limits shared by every process on the store."""

    @abstractmethod
    async def rate_hit(self, key: str, *, now: float, window: float, limit: int) -> bool:
        """Atomically: record one attempt of ``key`` at ``now`` when fewer than ``limit`` were
        recorded in ``(now - window, now]`` and return ``True``; else record nothing and
        return ``False`` (a moving window). Concurrent calls never overrun ``limit``."""

    @abstractmethod
    async def rate_window(self, key: str, *, now: float, window: float) -> tuple[int, float]:
        """How many attempts of ``key`` lie in ``(now - window, now]``, and when the oldest of
        them leaves the window (``now`` when none)."""

    @abstractmethod
    async def rate_clear(self, key: str) -> None:
        """Forget every attempt of ``key``. Old attempts are also removed by :meth:`purge`."""


class SessionStore(RefreshTokenStore, KeyBlobStore):
    """What :class:`~tokenward.sessions.SessionManager` needs: families, rotation, the feed
    and the successor secret."""


class Store(
    SessionStore,
    AccountStore,
    AuthorizationStore,
    ReplayCacheStore,
    AttemptCounterStore,
    GrantRecordStore,
):
    """Async storage of everything tokenward keeps: every capability. Use as
    ``async with store:``."""


# A factory turns a URL into a store; see tokenward.store.store_from_url.
StoreFactory = Callable[[str], "Store | Awaitable[Store]"]

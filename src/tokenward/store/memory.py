"""``memory://``: the whole :class:`~tokenward.store.base.Store` contract in one process.

For tests, demos and single-process deployments that may lose their state on restart. Every
method runs without an ``await`` between its reads and writes, so on one event loop each call
is atomic by construction; a :class:`threading.RLock` additionally makes it safe to share one
store between event loops in several threads. Records handed out are copies: mutating them never
changes the store.

Options (``MemoryStore("memory://", **options)``):

* ``poll_interval`` — unused by the memory feed (waiters are woken at once), kept for parity.

``available`` (and :meth:`MemoryStore.set_available`) simulates an outage: while ``False``
every method raises :class:`~tokenward.errors.StoreUnavailable`, so fail-closed paths can be
tested without a real server going down.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Callable
from dataclasses import replace

import orjson

from ..errors import AlreadyExists, NotFound, StoreUnavailable
from .base import (
    Client,
    Family,
    GrantRecord,
    PurgeCounts,
    RefreshTokenRecord,
    Resource,
    RevocationEvent,
    RevocationKind,
    Role,
    RotationOutcome,
    RotationResult,
    Store,
    User,
    decide_rotation,
)

__all__ = ["MemoryStore"]

REUSE_REASON = "refresh_token_reuse"


class MemoryStore(Store):
    """An asyncio-safe, in-process store. ``MemoryStore("memory://")``."""

    schemes = ("memory",)

    def __init__(self, url: str = "memory://", *, poll_interval: float = 0.2) -> None:
        self.url = url
        self.poll_interval = float(poll_interval)
        self.available = True
        self._lock = threading.RLock()
        self._families: dict[str, Family] = {}
        self._by_sub: dict[str, set[str]] = {}
        self._tokens: dict[bytes, RefreshTokenRecord] = {}
        self._family_tokens: dict[str, list[bytes]] = {}
        self._events: list[RevocationEvent] = []  # seq order
        self._seq = 0
        self._keys: bytes | None = None
        self._secrets: dict[str, bytes] = {}
        self._users: dict[str, User] = {}
        self._clients: dict[str, Client] = {}
        self._resources: dict[str, Resource] = {}
        self._roles: dict[str, Role] = {}
        self._rates: dict[str, list[float]] = {}
        self._dpop_jtis: dict[str, float] = {}
        self._records: dict[tuple[str, str], GrantRecord] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"

    # -- helpers ---------------------------------------------------------------------------
    def set_available(self, available: bool) -> None:
        """Simulate an outage (``False``) or a recovery (``True``)."""
        self.available = available

    def _guard(self) -> None:
        if not self.available:
            raise StoreUnavailable("the memory store is marked unavailable")

    def _append(
        self, kind: RevocationKind, value: str, now: float, until: float
    ) -> RevocationEvent:
        self._seq += 1
        event = RevocationEvent(self._seq, kind, value, float(until), float(now))
        self._events.append(event)
        return event

    def _notify(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)

    def _revoke(self, family: Family, now: float, reason: str, until: float) -> RevocationEvent:
        family.revoked_at = float(now)
        family.revoked_reason = reason
        return self._append(RevocationKind.SID, family.sid, now, until)

    # -- refresh tokens and families -------------------------------------------------------
    async def create_family(self, family: Family, token: RefreshTokenRecord) -> None:
        self._guard()
        with self._lock:
            if family.sid in self._families:
                raise AlreadyExists("a family with this sid exists")
            if token.token_hash in self._tokens:
                raise AlreadyExists("a refresh token with this hash exists")
            fam = replace(family, current_hash=token.token_hash)
            self._families[fam.sid] = fam
            self._by_sub.setdefault(fam.sub, set()).add(fam.sid)
            self._tokens[token.token_hash] = replace(token, sid=fam.sid)
            self._family_tokens[fam.sid] = [token.token_hash]

    async def get_refresh_token(
        self, token_hash: bytes, *, sid: str | None = None
    ) -> tuple[RefreshTokenRecord, Family] | None:
        self._guard()
        with self._lock:
            record = self._tokens.get(token_hash)
            if record is None or (sid is not None and record.sid != sid):
                return None
            family = self._families.get(record.sid)
            if family is None:
                return None
            return replace(record), replace(family)

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
        self._guard()
        with self._lock:
            record = self._tokens.get(parent_hash)
            family = self._families.get(record.sid) if record is not None else None
            if record is None or family is None:
                return RotationResult(RotationOutcome.NOT_FOUND)
            outcome = decide_rotation(
                family_revoked=family.revoked,
                current_hash=family.current_hash,
                parent_hash=parent_hash,
                consumed_at=record.consumed_at,
                successor_hash=record.successor_hash,
                child_hash=child.token_hash,
                now=now,
                grace=grace,
            )
            if outcome is RotationOutcome.REVOKED:
                return RotationResult(RotationOutcome.REVOKED, replace(family))
            if outcome is RotationOutcome.ROTATED:
                if child.token_hash in self._tokens:  # never reuse a hash (cannot happen)
                    raise AlreadyExists("a refresh token with this hash exists")
                record.consumed_at = float(now)
                record.successor_hash = child.token_hash
                self._tokens[child.token_hash] = replace(
                    child, sid=family.sid, parent_hash=parent_hash, consumed_at=None
                )
                self._family_tokens.setdefault(family.sid, []).append(child.token_hash)
                family.current_hash = child.token_hash
                family.generation += 1
                family.last_used_at = float(now)
                family.idle_expires_at = float(idle_expires_at)
                return RotationResult(RotationOutcome.ROTATED, replace(family))
            if outcome is RotationOutcome.GRACE:
                family.last_used_at = float(now)
                family.idle_expires_at = float(idle_expires_at)
                return RotationResult(RotationOutcome.GRACE, replace(family))
            event = self._revoke(family, now, REUSE_REASON, revocation_until)
            result = RotationResult(RotationOutcome.REUSED, replace(family), event)
        self._notify()
        return result

    async def get_family(self, sid: str) -> Family | None:
        self._guard()
        with self._lock:
            family = self._families.get(sid)
            return replace(family) if family is not None else None

    async def list_families(self, sub: str, *, include_revoked: bool = False) -> list[Family]:
        self._guard()
        with self._lock:
            families = (self._families[sid] for sid in self._by_sub.get(sub, ()))
            found = [replace(f) for f in families if include_revoked or not f.revoked]
        found.sort(key=lambda f: (f.created_at, f.sid), reverse=True)
        return found

    async def revoke_family(
        self, sid: str, *, now: float, reason: str, until: float
    ) -> RevocationEvent | None:
        self._guard()
        with self._lock:
            family = self._families.get(sid)
            if family is None or family.revoked:
                return None
            event = self._revoke(family, now, reason, until)
        self._notify()
        return event

    async def revoke_subject(self, sub: str, *, now: float, until: float) -> list[RevocationEvent]:
        self._guard()
        with self._lock:
            events: list[RevocationEvent] = []
            for sid in sorted(self._by_sub.get(sub, ())):
                family = self._families[sid]
                if not family.revoked:
                    events.append(self._revoke(family, now, "subject_revoked", until))
            events.append(self._append(RevocationKind.SUB, sub, now, until))
        self._notify()
        return events

    # -- revocation feed -------------------------------------------------------------------
    async def add_revocation(
        self, kind: RevocationKind, value: str, *, now: float, until: float
    ) -> RevocationEvent:
        self._guard()
        with self._lock:
            event = self._append(RevocationKind(kind), value, now, until)
        self._notify()
        return event

    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        self._guard()
        return self._after(cursor, now, limit)

    def _after(self, cursor: int, now: float, limit: int = 1000) -> list[RevocationEvent]:
        with self._lock:
            events = self._events
            start = bisect.bisect_right(events, cursor, key=lambda e: e.seq)
            out: list[RevocationEvent] = []
            for event in events[start:]:
                if event.until > now:
                    out.append(event)
                    if len(out) >= limit:
                        break
            return out

    async def revocation_cursor(self) -> int:
        self._guard()
        return self._seq

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._guard()
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                events = self._after(cursor, now())
                if events:
                    return events
                self._waiters.append((loop, fut))
            left = deadline - loop.time()
            if left <= 0:
                return []
            try:
                # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that
                # arrives as the future completes, and a stopping follower then never stops
                async with asyncio.timeout(left):
                    await fut
            except TimeoutError:
                return await self.revocations_after(cursor, now=now())
            finally:
                with self._lock:
                    self._waiters = [w for w in self._waiters if w[1] is not fut]

    # -- retention -------------------------------------------------------------------------
    async def purge(self, *, now: float, margin: float) -> PurgeCounts:
        self._guard()
        cutoff = now - margin
        with self._lock:
            gone = [
                f
                for f in self._families.values()
                if f.expires_at <= cutoff or f.idle_expires_at <= cutoff
            ]
            tokens = 0
            for family in gone:
                del self._families[family.sid]
                sids = self._by_sub.get(family.sub)
                if sids is not None:
                    sids.discard(family.sid)
                    if not sids:
                        del self._by_sub[family.sub]
                for token_hash in self._family_tokens.pop(family.sid, ()):
                    if self._tokens.pop(token_hash, None) is not None:
                        tokens += 1
            self._dpop_jtis = {k: u for k, u in self._dpop_jtis.items() if u > now}
            before = len(self._events)
            self._events = [e for e in self._events if e.until > now]
            return PurgeCounts(tokens, len(gone), before - len(self._events))

    # -- keys and secrets ------------------------------------------------------------------
    async def load_keys(self) -> bytes | None:
        self._guard()
        return self._keys

    async def save_keys(self, blob: bytes) -> None:
        self._guard()
        self._keys = bytes(blob)

    async def get_or_create_secret(self, name: str, factory: Callable[[], bytes]) -> bytes:
        self._guard()
        with self._lock:
            secret = self._secrets.get(name)
            if secret is None:
                secret = self._secrets[name] = bytes(factory())
            return secret

    # -- users and clients -----------------------------------------------------------------
    async def create_user(self, user: User) -> None:
        self._guard()
        with self._lock:
            if user.username in self._users:
                raise AlreadyExists(f"user {user.username!r} exists")
            self._users[user.username] = _copy_user(user)

    async def get_user(self, username: str) -> User | None:
        self._guard()
        user = self._users.get(username)
        return _copy_user(user) if user is not None else None

    async def update_user(self, user: User) -> None:
        self._guard()
        with self._lock:
            if user.username not in self._users:
                raise NotFound(f"unknown user {user.username!r}")
            self._users[user.username] = _copy_user(user)

    async def list_users(self) -> list[User]:
        self._guard()
        with self._lock:
            return [_copy_user(u) for _, u in sorted(self._users.items())]

    async def delete_user(self, username: str) -> bool:
        self._guard()
        with self._lock:
            return self._users.pop(username, None) is not None

    async def create_client(self, client: Client) -> None:
        self._guard()
        with self._lock:
            if client.client_id in self._clients:
                raise AlreadyExists(f"client {client.client_id!r} exists")
            self._clients[client.client_id] = replace(client)

    async def get_client(self, client_id: str) -> Client | None:
        self._guard()
        client = self._clients.get(client_id)
        return replace(client) if client is not None else None

    async def list_clients(self) -> list[Client]:
        self._guard()
        with self._lock:
            return [replace(c) for _, c in sorted(self._clients.items())]

    async def update_client(self, client: Client) -> None:
        self._guard()
        with self._lock:
            if client.client_id not in self._clients:
                raise NotFound(f"unknown client {client.client_id!r}")
            self._clients[client.client_id] = replace(client)

    # -- resources and roles ---------------------------------------------------------------
    async def create_resource(self, resource: Resource) -> None:
        self._guard()
        with self._lock:
            if resource.identifier in self._resources:
                raise AlreadyExists(f"resource {resource.identifier!r} exists")
            self._resources[resource.identifier] = _copy_resource(resource)

    async def update_resource(self, resource: Resource) -> None:
        self._guard()
        with self._lock:
            if resource.identifier not in self._resources:
                raise NotFound(f"unknown resource {resource.identifier!r}")
            self._resources[resource.identifier] = _copy_resource(resource)

    async def get_resource(self, identifier: str) -> Resource | None:
        self._guard()
        found = self._resources.get(identifier)
        return _copy_resource(found) if found is not None else None

    async def list_resources(self) -> list[Resource]:
        self._guard()
        with self._lock:
            return [_copy_resource(r) for _, r in sorted(self._resources.items())]

    async def delete_resource(self, identifier: str) -> bool:
        self._guard()
        with self._lock:
            return self._resources.pop(identifier, None) is not None

    async def create_role(self, role: Role) -> None:
        self._guard()
        with self._lock:
            if role.name in self._roles:
                raise AlreadyExists(f"role {role.name!r} exists")
            self._roles[role.name] = replace(role)

    async def update_role(self, role: Role) -> None:
        self._guard()
        with self._lock:
            if role.name not in self._roles:
                raise NotFound(f"unknown role {role.name!r}")
            self._roles[role.name] = replace(role)

    async def get_role(self, name: str) -> Role | None:
        self._guard()
        found = self._roles.get(name)
        return replace(found) if found is not None else None

    async def list_roles(self) -> list[Role]:
        self._guard()
        with self._lock:
            return [replace(r) for _, r in sorted(self._roles.items())]

    async def delete_role(self, name: str) -> bool:
        self._guard()
        with self._lock:
            return self._roles.pop(name, None) is not None

    async def delete_client(self, client_id: str) -> bool:
        self._guard()
        with self._lock:
            return self._clients.pop(client_id, None) is not None

    # -- DPoP replay cache -----------------------------------------------------------------
    async def dpop_jti_seen(self, key: str, *, now: float, until: float) -> bool:
        self._guard()
        with self._lock:
            exp = self._dpop_jtis.get(key)
            if exp is not None and exp > now:
                return True
            self._dpop_jtis[key] = until
            return False

    # -- authorization-code / OpenID Connect records ----------------------------------------
    async def create_record(self, record: GrantRecord, *, now: float) -> bool:
        self._guard()
        with self._lock:
            found = self._records.get((record.kind, record.key))
            if found is not None and not found.expired(now):
                return False
            self._records[(record.kind, record.key)] = _copy_record(record, version=0)
            return True

    async def get_record(self, kind: str, key: str, *, now: float) -> GrantRecord | None:
        self._guard()
        with self._lock:
            found = self._records.get((kind, key))
            if found is None or found.expired(now):
                return None
            return _copy_record(found)

    async def update_record(self, record: GrantRecord, *, now: float) -> bool:
        self._guard()
        with self._lock:
            found = self._records.get((record.kind, record.key))
            if found is None or found.expired(now) or found.version != record.version:
                return False
            self._records[(record.kind, record.key)] = _copy_record(
                record, version=record.version + 1
            )
            return True

    async def delete_record(self, kind: str, key: str) -> bool:
        self._guard()
        with self._lock:
            return self._records.pop((kind, key), None) is not None

    async def list_records(self, kind: str, owner: str, *, now: float) -> list[GrantRecord]:
        self._guard()
        with self._lock:
            return [
                _copy_record(r)
                for (k, _), r in sorted(self._records.items())
                if k == kind and r.owner == owner and not r.expired(now)
            ]

    async def purge_records(self, *, now: float) -> int:
        self._guard()
        with self._lock:
            gone = [k for k, r in self._records.items() if r.expired(now)]
            for k in gone:
                del self._records[k]
            return len(gone)

    # -- attempt counters ------------------------------------------------------------------
    async def rate_hit(self, key: str, *, now: float, window: float, limit: int) -> bool:
        self._guard()
        with self._lock:
            live = [t for t in self._rates.get(key, []) if t > now - window]
            ok = len(live) < limit
            if ok:
                live.append(now)
            self._rates[key] = live
            return ok

    async def rate_window(self, key: str, *, now: float, window: float) -> tuple[int, float]:
        self._guard()
        with self._lock:
            live = [t for t in self._rates.get(key, []) if t > now - window]
        return len(live), (min(live) + window if live else now)

    async def rate_clear(self, key: str) -> None:
        self._guard()
        with self._lock:
            self._rates.pop(key, None)

    # -- health ----------------------------------------------------------------------------
    async def ping(self) -> None:
        self._guard()


def _copy_user(user: User) -> User:
    return replace(user, attributes=dict(user.attributes))


def _copy_resource(resource: Resource) -> Resource:
    key = resource.encryption_key
    return replace(
        resource, scopes=dict(resource.scopes), encryption_key=dict(key) if key else None
    )


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _copy_record(record: GrantRecord, *, version: int | None = None) -> GrantRecord:
    return GrantRecord(
        record.kind,
        record.key,
        record.owner,
        orjson.loads(orjson.dumps(record.data)),
        record.expires_at,
        record.version if version is None else version,
    )

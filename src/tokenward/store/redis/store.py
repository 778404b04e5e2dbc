"""``redis://`` and ``rediss://``: the store on Redis (redis-py asyncio + hiredis).

Every atomic step of the :class:`~tokenward.store.base.Store` contract is one Lua script
(:mod:`tokenward.store.redis.scripts`, run with ``EVALSHA``; redis-py reloads a script after
``SCRIPT FLUSH`` or a failover). Keys expire by themselves (relative ``EXPIRE`` computed from the
caller's ``now``); the revocation feed is a Redis Stream whose entry ids are ``<seq>-0``, so
followers ``XREAD BLOCK`` after their cursor.

Key layout for ``prefix="tw"`` (``{...}`` is the Redis Cluster hash tag)::

    {tw:fam:<sid>}          hash   the family (Family fields; hashes as hex)      TTL
    {tw:fam:<sid>}:tok      hash   its token records: <hex>:c|p|u|s               TTL
    tw:rt:<hex>             string token hash -> sid (find the family first)     TTL
    {tw}:sub:<sub>          zset   the subject's sids scored by created_at        TTL
    {tw}:deadline           zset   sid -> min(expires_at, idle_expires_at) (purge index)
    {tw}:seq                string the revocation sequence (INCR)
    {tw}:rev                stream the revocation feed, ids <seq>-0 (trimmed by purge)
    {tw}:revexp             zset   seq -> until (purge index)
    {tw}:keys  {tw}:secret:<name>  {tw}:user:<name> {tw}:users  {tw}:client:<id> {tw}:clients
    {tw}:resource:<id> {tw}:resources  {tw}:role:<name> {tw}:roles   (JSON records + index sets)
    {tw}:dpop:<replay key>  string a seen DPoP proof: its until (script)                  TTL
    {tw}:gr:…  {tw}:gri:…  {tw}:grexp   grant records (see tokenward.store.redis.grants)

A family's keys share one slot; everything global shares the ``{tw}`` slot. On a single node
(the supported and tested deployment, also behind Sentinel) every script declares all its keys.
On Redis Cluster ``create_family``, ``rotate``, ``revoke_family`` and ``revoke_subject`` would be
cross-slot (family slot + token index + the global slot); see ``docs/stores-redis.md``.

Fail closed: every call is bounded by ``timeout`` (socket connect/read timeouts and an
``asyncio.timeout`` around the whole call); connection errors, timeouts, ``BUSY``, ``LOADING``,
``CLUSTERDOWN``, ``MASTERDOWN``, ``READONLY`` ... raise :class:`~tokenward.errors.StoreUnavailable`.
redis-py's automatic retries are switched off: re-sending a rotation whose reply was lost could
turn a success into a reuse. The pool reconnects by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import AlreadyExists, ConfigurationError, NotFound, StoreUnavailable
from ..base import (
    Client,
    Family,
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
)
from . import scripts as lua
from .grants import RedisGrantRecordsMixin

__all__ = ["RedisStore"]

T = TypeVar("T")

_UNAVAILABLE_REPLIES = (
    "BUSY",
    "LOADING",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "NOREPLICAS",
    "TRYAGAIN",
    "MISCONF",
    "UNBLOCKED",
)
_PURGE_BATCH = 10_000


def _num(value: float) -> str:
    return repr(float(value))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class RedisStore(RedisGrantRecordsMixin, Store):
    """``RedisStore("redis://127.0.0.1:6379/0", prefix="tw", timeout=2.0)``.

    Options: ``prefix`` (key namespace; also ``?prefix=name`` in the URL, so that servers
    configured by URL alone can share one database), ``timeout`` (seconds, bounds every call),
    ``ttl_margin`` (seconds a dead family is kept for reuse detection and purge, default one
    day), ``max_connections``; other keyword options go to ``redis.asyncio.Redis.from_url``.
    """

    schemes = ("redis", "rediss")

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tw",
        timeout: float = 2.0,
        ttl_margin: float = 86_400.0,
        max_connections: int = 64,
        poll_interval: float = 0.2,
        **options: Any,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        url, prefix = _url_prefix(url, prefix)
        # the separator is ours: "nu:" and "nu" name the same namespace (never "nu::rt:...")
        prefix = prefix.rstrip(":")
        if not prefix or any(c in prefix for c in "{} "):
            raise ConfigurationError("prefix must be non-empty, without braces or spaces")
        self.url = url
        self.prefix = prefix
        self.timeout = float(timeout)
        self.ttl_margin = float(ttl_margin)
        self.max_connections = int(max_connections)
        self.poll_interval = float(poll_interval)
        self._options = options
        self._redis: Redis | None = None
        self._blocking: Redis | None = None
        g = f"{{{prefix}}}"
        self._k_seq = f"{g}:seq"
        self._k_stream = f"{g}:rev"
        self._k_revexp = f"{g}:revexp"
        self._k_deadline = f"{g}:deadline"
        self._k_keys = f"{g}:keys"
        self._k_users = f"{g}:users"
        self._k_clients = f"{g}:clients"
        self._k_resources = f"{g}:resources"
        self._k_roles = f"{g}:roles"
        self._g = g
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, timeout={self.timeout})"

    # -- key names -------------------------------------------------------------------------
    def family_key(self, sid: str) -> str:
        return f"{{{self.prefix}:fam:{sid}}}"

    def tokens_key(self, sid: str) -> str:
        return f"{{{self.prefix}:fam:{sid}}}:tok"

    def token_index_key(self, token_hash: bytes) -> str:
        return f"{self.prefix}:rt:{token_hash.hex()}"

    def subject_key(self, sub: str) -> str:
        return f"{self._g}:sub:{sub}"

    @property
    def stream_key(self) -> str:
        return self._k_stream

    # -- connection ------------------------------------------------------------------------
    def _make(self, *, blocking: bool) -> Redis:
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            # blocking reads (XREAD BLOCK) are bounded by asyncio.timeout instead
            "socket_timeout": None if blocking else self.timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "max_connections": 16 if blocking else self.max_connections,
            "decode_responses": False,
        }
        kwargs.update(self._options)
        client: Redis = Redis.from_url(self.url, **kwargs)
        return client

    @property
    def _r(self) -> Redis:
        if self._redis is None:
            self._redis = self._make(blocking=False)
            self._scripts = {
                name: self._redis.register_script(getattr(lua, name)) for name in lua.__all__
            }
        return self._redis

    @property
    def _rb(self) -> Redis:
        if self._blocking is None:
            self._blocking = self._make(blocking=True)
        return self._blocking

    async def open(self) -> None:
        await self.ping()

    async def close(self) -> None:
        clients = [c for c in (self._redis, self._blocking) if c is not None]
        self._redis = self._blocking = None
        for client in clients:
            with contextlib.suppress(RedisConnectionError, OSError):
                await client.aclose()

    async def drop(self) -> int:
        """Delete every key under this store's prefix (tests, ``tokenward`` resets).

        Not atomic; returns the number of keys deleted.
        """

        async def run() -> int:
            deleted = 0
            for pattern in (
                f"{{{self.prefix}}}:*",
                f"{{{self.prefix}:fam:*",
                f"{self.prefix}:rt:*",
            ):
                batch: list[bytes] = []
                async for key in self._r.scan_iter(match=_glob_escape(pattern), count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        deleted += int(await self._r.unlink(*batch))
                        batch = []
                if batch:
                    deleted += int(await self._r.unlink(*batch))
            return deleted

        return await self._call(run, "drop", timeout=max(self.timeout, 30.0))

    async def _call(
        self, op: Callable[[], Awaitable[T]], what: str, *, timeout: float | None = None
    ) -> T:
        """Run ``op`` bounded by the timeout, mapping every outage to ``StoreUnavailable``."""
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await op()
        except TimeoutError as exc:  # asyncio.timeout (builtin TimeoutError)
            raise StoreUnavailable(f"redis store timed out during {what}") from exc
        except (
            RedisConnectionError,
            RedisTimeoutError,
            BusyLoadingError,
            ClusterDownError,
            TryAgainError,
            OSError,
        ) as exc:
            raise StoreUnavailable(
                f"redis store unavailable during {what} ({self._reason(exc)})"
            ) from exc
        except ResponseError as exc:
            if str(exc).split(" ", 1)[0].upper() in _UNAVAILABLE_REPLIES:
                raise StoreUnavailable(
                    f"redis store unavailable during {what} ({str(exc).split(' ', 1)[0]})"
                ) from exc
            raise

    def _reason(self, exc: BaseException) -> str:
        """The client's own reason (``Error 111 connecting to host:6379. Connection refused.``),
        one line, the URL's password masked; the exception's class when there is none."""
        text = " ".join(str(exc).split())[:200]
        from urllib.parse import urlsplit

        password = urlsplit(self.url).password
        if password:
            text = text.replace(password, "***")
        return text or type(exc).__name__

    async def _script(self, name: str, keys: Sequence[str], args: Iterable[Any]) -> Any:
        self._r  # noqa: B018 - make sure the client and scripts exist
        return await self._scripts[name](keys=list(keys), args=list(args))

    # -- refresh tokens and families -------------------------------------------------------
    async def create_family(self, family: Family, token: RefreshTokenRecord) -> None:
        sid = family.sid
        fam = _family_fields(family, current_hash=token.token_hash)
        deadline = min(family.expires_at, family.idle_expires_at)
        keys = [
            self.family_key(sid),
            self.tokens_key(sid),
            self.token_index_key(token.token_hash),
            self.subject_key(family.sub),
            self._k_deadline,
        ]
        args = [
            sid,
            token.token_hash.hex(),
            _num(token.created_at),
            token.parent_hash.hex() if token.parent_hash is not None else "",
            _num(family.created_at),
            _num(self.ttl_margin),
            _num(family.created_at),
            _num(deadline),
            *fam,
        ]
        result = _s(await self._call(lambda: self._script("CREATE_FAMILY", keys, args), "create"))
        if result == "family_exists":
            raise AlreadyExists("a family with this sid exists")
        if result == "token_exists":
            raise AlreadyExists("a refresh token with this hash exists")

    async def get_refresh_token(
        self, token_hash: bytes
    ) -> tuple[RefreshTokenRecord, Family] | None:
        h = token_hash.hex()

        async def run() -> tuple[RefreshTokenRecord, Family] | None:
            raw_sid = await self._r.get(self.token_index_key(token_hash))
            if raw_sid is None:
                return None
            sid = _s(raw_sid)
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.family_key(sid))
                pipe.hmget(self.tokens_key(sid), [f"{h}:c", f"{h}:p", f"{h}:u", f"{h}:s"])
                fam_raw, rec = await pipe.execute()
            if not fam_raw or rec[0] is None:
                return None
            record = RefreshTokenRecord(
                token_hash=token_hash,
                sid=sid,
                created_at=float(rec[0]),
                parent_hash=bytes.fromhex(_s(rec[1])) if rec[1] is not None else None,
                consumed_at=float(rec[2]) if rec[2] is not None else None,
                successor_hash=bytes.fromhex(_s(rec[3])) if rec[3] is not None else None,
            )
            return record, _family_from(fam_raw)

        return await self._call(run, "get_refresh_token")

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
        async def run() -> Any:
            raw_sid = await self._r.get(self.token_index_key(parent_hash))
            if raw_sid is None:
                return None
            sid = _s(raw_sid)
            keys = [
                self.family_key(sid),
                self.tokens_key(sid),
                self.token_index_key(child.token_hash),
                self._k_seq,
                self._k_stream,
                self._k_revexp,
                self._k_deadline,
            ]
            args = [
                sid,
                parent_hash.hex(),
                child.token_hash.hex(),
                _num(child.created_at),
                _num(now),
                _num(grace),
                _num(idle_expires_at),
                _num(revocation_until),
                _num(self.ttl_margin),
            ]
            return await self._script("ROTATE", keys, args)

        reply = await self._call(run, "rotate")
        if reply is None:
            return RotationResult(RotationOutcome.NOT_FOUND)
        outcome = _s(reply[0])
        if outcome == "token_exists":
            raise AlreadyExists("a refresh token with this hash exists")
        if outcome == "not_found":
            return RotationResult(RotationOutcome.NOT_FOUND)
        family = _family_from(_pairs(reply[2:]))
        event = None
        if outcome == "reused":
            event = RevocationEvent(
                int(reply[1]), RevocationKind.SID, family.sid, float(revocation_until), float(now)
            )
        return RotationResult(RotationOutcome(outcome), family, event)

    async def get_family(self, sid: str) -> Family | None:
        raw = await self._call(lambda: self._r.hgetall(self.family_key(sid)), "get_family")
        return _family_from(raw) if raw else None

    async def list_families(self, sub: str, *, include_revoked: bool = False) -> list[Family]:
        async def run() -> list[Family]:
            sids = await self._r.zrange(self.subject_key(sub), 0, -1)
            if not sids:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.hgetall(self.family_key(_s(sid)))
                raws = await pipe.execute()
            return [_family_from(raw) for raw in raws if raw]

        found = await self._call(run, "list_families")
        found = [f for f in found if include_revoked or not f.revoked]
        found.sort(key=lambda f: (f.created_at, f.sid), reverse=True)
        return found

    async def revoke_family(
        self, sid: str, *, now: float, reason: str, until: float
    ) -> RevocationEvent | None:
        keys = [self.family_key(sid), self._k_seq, self._k_stream, self._k_revexp]
        args = [sid, _num(now), reason, _num(until)]
        seq = int(
            await self._call(lambda: self._script("REVOKE_FAMILY", keys, args), "revoke_family")
        )
        if seq == 0:
            return None
        return RevocationEvent(seq, RevocationKind.SID, sid, float(until), float(now))

    async def revoke_subject(self, sub: str, *, now: float, until: float) -> list[RevocationEvent]:
        async def run() -> list[Any]:
            for _ in range(100):  # optimistic: retry when a family was added meanwhile
                sids = sorted(_s(s) for s in await self._r.zrange(self.subject_key(sub), 0, -1))
                keys = [self.subject_key(sub), self._k_seq, self._k_stream, self._k_revexp]
                keys += [self.family_key(sid) for sid in sids]
                reply = await self._script(
                    "REVOKE_SUBJECT", keys, [sub, _num(now), _num(until), *sids]
                )
                if _s(reply[0]) == "ok":
                    return list(reply[1:])
            raise StoreUnavailable("revoke_subject kept racing with new sessions")

        pairs = await self._call(run, "revoke_subject")
        events: list[RevocationEvent] = []
        for i in range(0, len(pairs), 2):
            sid, seq = _s(pairs[i]), int(pairs[i + 1])
            if sid:
                events.append(RevocationEvent(seq, RevocationKind.SID, sid, float(until), now))
            else:
                events.append(RevocationEvent(seq, RevocationKind.SUB, sub, float(until), now))
        return events

    # -- revocation feed -------------------------------------------------------------------
    async def add_revocation(
        self, kind: RevocationKind, value: str, *, now: float, until: float
    ) -> RevocationEvent:
        kind = RevocationKind(kind)
        keys = [self._k_seq, self._k_stream, self._k_revexp]
        args = [kind.value, value, _num(until), _num(now)]
        seq = int(
            await self._call(lambda: self._script("ADD_REVOCATION", keys, args), "add_revocation")
        )
        return RevocationEvent(seq, kind, value, float(until), float(now))

    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        async def run() -> list[RevocationEvent]:
            out: list[RevocationEvent] = []
            start = f"({int(cursor)}-0"
            while len(out) < limit:
                entries: list[Any] = (
                    await self._r.xrange(self._k_stream, min=start, max="+", count=limit) or []
                )
                for entry_id, fields in entries:
                    event = _event_from(entry_id, fields)
                    if event.until > now:
                        out.append(event)
                        if len(out) >= limit:
                            break
                if len(entries) < limit:
                    break
                start = f"({_s(entries[-1][0])}"
            return out

        return await self._call(run, "revocations_after")

    async def revocation_cursor(self) -> int:
        raw = await self._call(lambda: self._r.get(self._k_seq), "revocation_cursor")
        return int(raw) if raw is not None else 0

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        """``XREAD BLOCK`` on a dedicated connection pool, bounded by ``timeout`` (+ the store
        timeout for the round trip)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            block_ms = int((deadline - loop.time()) * 1000)
            if block_ms < 1:
                return await self.revocations_after(cursor, now=now())

            async def read(ms: int = block_ms, after: int = cursor) -> Any:
                return await self._rb.xread({self._k_stream: f"{after}-0"}, count=1000, block=ms)

            reply = await self._call(
                read, "wait_revocations", timeout=block_ms / 1000 + self.timeout
            )
            if not reply:
                return []
            t = now()
            events = [_event_from(i, f) for _, entries in reply for i, f in entries]
            live = [e for e in events if e.until > t]
            if live:
                return live
            cursor = max(cursor, events[-1].seq)

    # -- retention -------------------------------------------------------------------------
    async def purge(self, *, now: float, margin: float) -> PurgeCounts:
        cutoff = now - margin

        async def run() -> PurgeCounts:
            tokens = families = revocations = 0
            while True:
                removed, more = await self._script(
                    "PURGE_STREAM", [self._k_stream, self._k_revexp], [_num(now), _PURGE_BATCH]
                )
                revocations += int(removed)
                if not int(more):
                    break
            while True:
                sids = await self._r.zrangebyscore(
                    self._k_deadline, "-inf", _num(cutoff), start=0, num=1000
                )
                for raw_sid in sids:
                    sid = _s(raw_sid)
                    reply = await self._script(
                        "PURGE_FAMILY",
                        [self.family_key(sid), self.tokens_key(sid), self._k_deadline],
                        [sid, _num(cutoff)],
                    )
                    if not int(reply[0]):
                        continue
                    families += 1
                    hexes = [_s(h) for h in reply[2:]]
                    tokens += len(hexes)
                    async with self._r.pipeline(transaction=False) as pipe:
                        pipe.zrem(self.subject_key(_s(reply[1])), sid)
                        for h in hexes:
                            pipe.delete(f"{self.prefix}:rt:{h}")
                        await pipe.execute()
                if len(sids) < 1000:
                    break
            return PurgeCounts(tokens, families, revocations)

        return await self._call(run, "purge", timeout=max(self.timeout, 60.0))

    # -- keys and secrets ------------------------------------------------------------------
    async def load_keys(self) -> bytes | None:
        raw = await self._call(lambda: self._r.get(self._k_keys), "load_keys")
        return _b(raw) if raw is not None else None

    async def save_keys(self, blob: bytes) -> None:
        await self._call(lambda: self._r.set(self._k_keys, bytes(blob)), "save_keys")

    async def get_or_create_secret(self, name: str, factory: Callable[[], bytes]) -> bytes:
        key = f"{self._g}:secret:{name}"

        async def run() -> bytes:
            raw = await self._r.get(key)
            if raw is None:
                await self._r.set(key, bytes(factory()), nx=True)
                raw = await self._r.get(key)
            if raw is None:  # pragma: no cover - deleted between SET NX and GET
                raise StoreUnavailable("secret vanished while being created")
            return _b(raw)

        return await self._call(run, "get_or_create_secret")

    # -- users and clients -----------------------------------------------------------------
    async def _create_record(self, index: str, key: str, member: str, blob: bytes) -> bool:
        async def run() -> bool:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(key, blob, nx=True)
                pipe.sadd(index, member)
                created, _ = await pipe.execute()
            return bool(created)

        return await self._call(run, "create")

    async def _list_records(self, index: str, key_of: Callable[[str], str]) -> list[bytes]:
        async def run() -> list[bytes]:
            members = sorted(_s(m) for m in await self._r.smembers(index))
            if not members:
                return []
            raws = await self._r.mget([key_of(m) for m in members])
            return [_b(r) for r in raws if r is not None]

        return await self._call(run, "list")

    async def _replace_record(self, key: str, blob: bytes) -> bool:
        return bool(await self._call(lambda: self._r.set(key, blob, xx=True), "update"))

    async def _delete_record(self, index: str, key: str, member: str) -> bool:
        async def run() -> bool:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(index, member)
                deleted, _ = await pipe.execute()
            return bool(deleted)

        return await self._call(run, "delete")

    def _resource_key(self, identifier: str) -> str:
        return f"{self._g}:resource:{identifier}"

    def _role_key(self, name: str) -> str:
        return f"{self._g}:role:{name}"

    def _user_key(self, username: str) -> str:
        return f"{self._g}:user:{username}"

    def _client_key(self, client_id: str) -> str:
        return f"{self._g}:client:{client_id}"

    async def create_user(self, user: User) -> None:
        if not await self._create_record(
            self._k_users, self._user_key(user.username), user.username, _user_blob(user)
        ):
            raise AlreadyExists(f"user {user.username!r} exists")

    async def get_user(self, username: str) -> User | None:
        raw = await self._call(lambda: self._r.get(self._user_key(username)), "get_user")
        return _user_from(_b(raw)) if raw is not None else None

    async def update_user(self, user: User) -> None:
        key, blob = self._user_key(user.username), _user_blob(user)
        if not await self._call(lambda: self._r.set(key, blob, xx=True), "update_user"):
            raise NotFound(f"unknown user {user.username!r}")

    async def list_users(self) -> list[User]:
        return [_user_from(r) for r in await self._list_records(self._k_users, self._user_key)]

    async def delete_user(self, username: str) -> bool:
        async def run() -> bool:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(self._user_key(username))
                pipe.srem(self._k_users, username)
                deleted, _ = await pipe.execute()
            return bool(deleted)

        return await self._call(run, "delete_user")

    async def create_client(self, client: Client) -> None:
        if not await self._create_record(
            self._k_clients,
            self._client_key(client.client_id),
            client.client_id,
            _client_blob(client),
        ):
            raise AlreadyExists(f"client {client.client_id!r} exists")

    async def get_client(self, client_id: str) -> Client | None:
        raw = await self._call(lambda: self._r.get(self._client_key(client_id)), "get_client")
        return _client_from(_b(raw)) if raw is not None else None

    async def list_clients(self) -> list[Client]:
        raws = await self._list_records(self._k_clients, self._client_key)
        return [_client_from(r) for r in raws]

    async def update_client(self, client: Client) -> None:
        key, blob = self._client_key(client.client_id), _client_blob(client)
        if not await self._call(lambda: self._r.set(key, blob, xx=True), "update_client"):
            raise NotFound(f"unknown client {client.client_id!r}")

    async def delete_client(self, client_id: str) -> bool:
        key = self._client_key(client_id)

        async def run() -> bool:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(self._k_clients, client_id)
                deleted, _ = await pipe.execute()
            return bool(deleted)

        return await self._call(run, "delete_client")

    # -- attempt counters ------------------------------------------------------------------
    def _rate_key(self, key: str) -> str:
        return f"{self._g}:rate:{key}"

    async def rate_hit(self, key: str, *, now: float, window: float, limit: int) -> bool:
        keys = [self._rate_key(key)]
        args = [_num(now), _num(window), int(limit), f"{_num(now)}:{secrets.token_hex(6)}"]
        hit = await self._call(lambda: self._script("RATE_HIT", keys, args), "rate_hit")
        return bool(int(hit))

    async def rate_window(self, key: str, *, now: float, window: float) -> tuple[int, float]:
        k = self._rate_key(key)

        async def run() -> tuple[int, float]:
            got = await self._r.zrangebyscore(k, f"({_num(now - window)}", "+inf", withscores=True)
            if not got:
                return 0, now
            return len(got), float(got[0][1]) + window

        return await self._call(run, "rate_window")

    async def rate_clear(self, key: str) -> None:
        k = self._rate_key(key)
        await self._call(lambda: self._r.delete(k), "rate_clear")

    # -- resources and roles ---------------------------------------------------------------
    async def create_resource(self, resource: Resource) -> None:
        ident = resource.identifier
        blob = _resource_blob(resource)
        if not await self._create_record(self._k_resources, self._resource_key(ident), ident, blob):
            raise ConfigurationError(f"resource {ident!r} exists")

    async def update_resource(self, resource: Resource) -> None:
        key = self._resource_key(resource.identifier)
        if not await self._replace_record(key, _resource_blob(resource)):
            raise ConfigurationError(f"unknown resource {resource.identifier!r}")

    async def get_resource(self, identifier: str) -> Resource | None:
        key = self._resource_key(identifier)
        raw = await self._call(lambda: self._r.get(key), "get_resource")
        return _resource_from(_b(raw)) if raw is not None else None

    async def list_resources(self) -> list[Resource]:
        raws = await self._list_records(self._k_resources, self._resource_key)
        return [_resource_from(r) for r in raws]

    async def delete_resource(self, identifier: str) -> bool:
        key = self._resource_key(identifier)
        return await self._delete_record(self._k_resources, key, identifier)

    async def create_role(self, role: Role) -> None:
        key = self._role_key(role.name)
        if not await self._create_record(self._k_roles, key, role.name, _role_blob(role)):
            raise ConfigurationError(f"role {role.name!r} exists")

    async def update_role(self, role: Role) -> None:
        if not await self._replace_record(self._role_key(role.name), _role_blob(role)):
            raise ConfigurationError(f"unknown role {role.name!r}")

    async def get_role(self, name: str) -> Role | None:
        key = self._role_key(name)
        raw = await self._call(lambda: self._r.get(key), "get_role")
        return _role_from(_b(raw)) if raw is not None else None

    async def list_roles(self) -> list[Role]:
        return [_role_from(r) for r in await self._list_records(self._k_roles, self._role_key)]

    async def delete_role(self, name: str) -> bool:
        return await self._delete_record(self._k_roles, self._role_key(name), name)

    # -- DPoP replay cache -----------------------------------------------------------------
    async def dpop_jti_seen(self, key: str, *, now: float, until: float) -> bool:
        keys, args = [f"{self._g}:dpop:{key}"], [_num(now), _num(until)]
        seen = await self._call(lambda: self._script("DPOP_JTI_SEEN", keys, args), "dpop_jti_seen")
        return bool(int(seen))

    # -- health ----------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call(lambda: self._r.ping(), "ping")


# -- (de)serialisation ---------------------------------------------------------------------
_OPTIONAL = ("user_agent", "ip", "device", "revoked_reason", "dpop_jkt")


def _family_fields(family: Family, *, current_hash: bytes) -> list[str]:
    out = [
        "sid", family.sid,
        "sub", family.sub,
        "client_id", family.client_id,
        "scope", family.scope,
        "created_at", _num(family.created_at),
        "last_used_at", _num(family.last_used_at),
        "expires_at", _num(family.expires_at),
        "idle_expires_at", _num(family.idle_expires_at),
        "current_hash", current_hash.hex(),
        "generation", str(int(family.generation)),
    ]  # fmt: skip
    for name in _OPTIONAL:
        value = getattr(family, name)
        if value is not None:
            out += [name, value]
    if family.revoked_at is not None:
        out += ["revoked_at", _num(family.revoked_at)]
    return out


def _pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _family_from(raw: dict[Any, Any]) -> Family:
    d = {_s(k): _s(v) for k, v in raw.items()}
    return Family(
        sid=d["sid"],
        sub=d["sub"],
        client_id=d["client_id"],
        scope=d["scope"],
        created_at=float(d["created_at"]),
        last_used_at=float(d["last_used_at"]),
        expires_at=float(d["expires_at"]),
        idle_expires_at=float(d["idle_expires_at"]),
        current_hash=bytes.fromhex(d["current_hash"]),
        generation=int(d["generation"]),
        user_agent=d.get("user_agent"),
        ip=d.get("ip"),
        device=d.get("device"),
        revoked_at=float(d["revoked_at"]) if "revoked_at" in d else None,
        revoked_reason=d.get("revoked_reason"),
        dpop_jkt=d.get("dpop_jkt"),
    )


def _event_from(entry_id: Any, fields: dict[Any, Any]) -> RevocationEvent:
    f = {_s(k): _s(v) for k, v in fields.items()}
    return RevocationEvent(
        seq=int(_s(entry_id).split("-", 1)[0]),
        kind=RevocationKind(f["k"]),
        value=f["v"],
        until=float(f["u"]),
        at=float(f["a"]),
    )


def _user_blob(user: User) -> bytes:
    return orjson.dumps(
        {
            "username": user.username,
            "password_hash": user.password_hash,
            "created_at": user.created_at,
            "is_admin": user.is_admin,
            "disabled": user.disabled,
            "attributes": user.attributes,
            "roles": list(user.roles),
        }
    )


def _user_from(raw: bytes) -> User:
    d = orjson.loads(raw)
    return User(
        username=d["username"],
        password_hash=d["password_hash"],
        created_at=float(d["created_at"]),
        is_admin=bool(d["is_admin"]),
        disabled=bool(d["disabled"]),
        attributes=dict(d["attributes"]),
        # records written before the authorization model: is_admin was the admin role
        roles=tuple(d.get("roles", ["admin"] if d["is_admin"] else [])),
    )


def _client_blob(client: Client) -> bytes:
    return orjson.dumps(
        {
            "client_id": client.client_id,
            "created_at": client.created_at,
            "secret_hash": client.secret_hash,
            "grants": list(client.grants),
            "scopes": list(client.scopes),
            "name": client.name,
            "resources": list(client.resources),
            "dpop_bound_access_tokens": bool(client.dpop_bound_access_tokens),
            "disabled": bool(client.disabled),
            "previous_secret_hash": client.previous_secret_hash,
            "previous_secret_expires_at": client.previous_secret_expires_at,
            "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
            "first_party": client.first_party,
            "backchannel_logout_uri": client.backchannel_logout_uri,
        }
    )


def _client_from(raw: bytes) -> Client:
    d = orjson.loads(raw)
    return Client(
        client_id=d["client_id"],
        created_at=float(d["created_at"]),
        secret_hash=d["secret_hash"],
        grants=tuple(d["grants"]),
        scopes=tuple(d["scopes"]),
        name=d["name"],
        dpop_bound_access_tokens=bool(d.get("dpop_bound_access_tokens", False)),
        disabled=bool(d.get("disabled", False)),
        previous_secret_hash=d.get("previous_secret_hash"),
        previous_secret_expires_at=d.get("previous_secret_expires_at"),
        redirect_uris=tuple(d.get("redirect_uris", ())),
        post_logout_redirect_uris=tuple(d.get("post_logout_redirect_uris", ())),
        first_party=bool(d.get("first_party", False)),
        backchannel_logout_uri=d.get("backchannel_logout_uri"),
        resources=tuple(d.get("resources", ())),
    )


def _resource_blob(resource: Resource) -> bytes:
    return orjson.dumps(
        {
            "identifier": resource.identifier,
            "name": resource.name,
            "created_at": resource.created_at,
            "scopes": resource.scopes,
            "default_scopes": list(resource.default_scopes),
            "access_token_ttl": resource.access_token_ttl,
            "encryption_key": resource.encryption_key,
        }
    )


def _resource_from(raw: bytes) -> Resource:
    d = orjson.loads(raw)
    return Resource(
        identifier=d["identifier"],
        name=d["name"],
        created_at=float(d["created_at"]),
        scopes=dict(d["scopes"]),
        default_scopes=tuple(d["default_scopes"]),
        access_token_ttl=d["access_token_ttl"],
        encryption_key=d["encryption_key"],
    )


def _role_blob(role: Role) -> bytes:
    return orjson.dumps(
        {
            "name": role.name,
            "created_at": role.created_at,
            "scopes": list(role.scopes),
            "description": role.description,
        }
    )


def _role_from(raw: bytes) -> Role:
    d = orjson.loads(raw)
    return Role(
        name=d["name"],
        created_at=float(d["created_at"]),
        scopes=tuple(d["scopes"]),
        description=d["description"],
    )


def _glob_escape(pattern: str) -> str:
    """Escape ``[``/``]``/``?`` in a prefix for ``SCAN MATCH``; keep the trailing ``*``."""
    body, star = (pattern[:-1], "*") if pattern.endswith("*") else (pattern, "")
    for ch in "\\[]?*":
        body = body.replace(ch, "\\" + ch)
    return body + star


def _url_prefix(url: str, prefix: str) -> tuple[str, str]:
    """Take ``prefix=`` out of the URL's query (redis-py would pass it to the connection)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [v for k, v in query if k == "prefix"]
    if not given:
        return url, prefix
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), given[-1]

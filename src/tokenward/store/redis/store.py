"""``redis://``, ``rediss://``, ``redis+cluster://``: the store on Redis (redis-py asyncio).

Every atomic step of the :class:`~tokenward.store.base.Store` contract is one Lua script
(:mod:`tokenward.store.redis.scripts`, run with ``EVALSHA``; redis-py reloads a script after
``SCRIPT FLUSH`` or a failover). Keys expire by themselves (relative ``EXPIRE`` computed from the
caller's ``now``); the revocation feed is a Redis Stream whose entry ids are ``<seq>-0``, so
followers ``XREAD BLOCK`` after their cursor.

Key layout for ``prefix="tw"`` (``{...}`` is the Redis Cluster hash tag; shard ``n`` of family
``sid`` is :func:`shard_of`, the first byte of ``sha256(sid)`` modulo :data:`SHARDS`)::

    {tw:s<n>}:fam:<sid>     hash   the family (Family fields; hashes as hex)      TTL
    {tw:s<n>}:tok:<sid>     hash   its token records: <hex>:c|p|u|s               TTL
    {tw:s<n>}:deadline      zset   sid -> min(expires_at, idle_expires_at) (purge index)
    {tw:s<n>}:out           stream the shard's outbox: revocation events not yet in the feed
    tw:rt:<hex>             string token hash -> sid of untagged (former) tokens   TTL
    {tw}:sub:<sub>          zset   the subject's sids scored by created_at        TTL
    {tw}:seq                string the revocation sequence (INCR)
    {tw}:rev                stream the revocation feed, ids <seq>-0 (trimmed by purge)
    {tw}:revexp             zset   seq -> until (purge index)
    {tw}:moved:<n>:<id>     string the seq outbox entry <id> of shard n got        TTL
    {tw}:keys  {tw}:secret:<name>  {tw}:user:<name> {tw}:users  {tw}:client:<id> {tw}:clients
    {tw}:resource:<id> {tw}:resources  {tw}:role:<name> {tw}:roles   (JSON records + index sets)
    {tw}:rate:<key>  {tw}:dpop:<replay key>                                         TTL
    {tw}:gr:…  {tw}:gri:…  {tw}:grexp   grant records (see tokenward.store.redis.grants)

Every script touches one hash slot: a shard's or the global ``{tw}`` one. A refresh token names
its family (``twr_<sid>.<secret>``), so the caller passes the sid and a lookup runs in the
family's shard; untagged tokens issued before that are found through ``tw:rt:<hex>`` (a plain
``GET``) until they expire. A family's revocation event is written into its shard's outbox by
the same script as the revocation, then moved into ``{tw}:rev`` by :meth:`RedisStore._move`
(``MOVE_EVENT`` assigns the seq once per entry, a marker key makes a repeated move a no-op)
before the call returns; every feed read and follower moves what a crashed writer left. So an
acknowledged revocation is in Redis with the family change and reaches the feed. Data of the
former layout is moved by :meth:`RedisStore.migrate_layout` (``tokenward db migrate-redis``).
See ``docs/stores-redis.md``.

Fail closed: every call is bounded by ``timeout`` (socket connect/read timeouts and an
``asyncio.timeout`` around the whole call); connection errors, timeouts, ``BUSY``, ``LOADING``,
``CLUSTERDOWN``, ``MASTERDOWN``, ``READONLY`` ... raise :class:`~tokenward.errors.StoreUnavailable`.
redis-py's automatic retries are switched off: re-sending a rotation whose reply was lost could
turn a success into a reuse. The pool reconnects by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    NoScriptError,
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

__all__ = ["RedisClusterStore", "RedisStore"]

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
SHARDS = 16
"""Families are spread over this many shards, each one hash slot with its own outbox."""
_MARKER_TTL = 86_400
"""Seconds a moved outbox entry's marker (its seq) is kept: a mover that stalls longer than
this after reading an entry and before deleting it appends the event twice (harmless: a
revocation is idempotent)."""
_SWEEP_INTERVAL = 1.0
"""A follower moves every shard's outbox at least this often (events whose writer died before
moving them; a writer normally moves its own event at once)."""


def shard_of(sid: str) -> int:
    """The shard of family ``sid`` (stable: the first byte of ``sha256(sid)``)."""
    return hashlib.sha256(sid.encode()).digest()[0] % SHARDS


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
    day), ``max_connections``, ``wait_replicas`` and ``wait_timeout`` (below; also
    ``?wait_replicas=1&wait_timeout=0.5`` in the URL); other keyword options go to
    ``redis.asyncio.Redis.from_url``.

    ``wait_replicas=n`` (default 0 here, 1 on Redis Cluster): a revocation is acknowledged only
    once ``n`` replicas of the master that took it have it (``WAIT n`` on the connection that
    wrote it, bounded by ``wait_timeout`` seconds, default the smaller of 0.5 and half of
    ``timeout``); fewer raise
    :class:`~tokenward.errors.StoreUnavailable` (fail closed: the caller gets a 503 and
    retries; a revocation is idempotent).
    """

    default_wait_replicas = 0

    schemes: tuple[str, ...] = ("redis", "rediss")

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tw",
        timeout: float = 2.0,
        ttl_margin: float = 86_400.0,
        max_connections: int = 64,
        poll_interval: float = 0.2,
        wait_replicas: int | None = None,
        wait_timeout: float | None = None,
        **options: Any,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        url, given = _url_options(url, _OWN_OPTIONS)
        prefix = given.get("prefix", prefix)
        if wait_replicas is None:
            wait_replicas = self.default_wait_replicas
        try:
            replicas = int(given.get("wait_replicas", wait_replicas))
            wait_timeout = float(given.get("wait_timeout", wait_timeout or min(0.5, timeout / 2)))
        except ValueError as exc:
            raise ConfigurationError(
                "wait_replicas must be an integer, wait_timeout a number of seconds"
            ) from exc
        if replicas < 0 or (replicas and not 0 < wait_timeout < timeout):
            raise ConfigurationError(
                "wait_replicas must be >= 0 and wait_timeout between 0 and timeout (seconds)"
            )
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
        self.wait_replicas = replicas
        self.wait_timeout = float(wait_timeout)
        self._options = options
        self._redis: Redis | None = None
        self._blocking: Redis | None = None
        g = f"{{{prefix}}}"
        self._k_seq = f"{g}:seq"
        self._k_stream = f"{g}:rev"
        self._k_revexp = f"{g}:revexp"
        self._k_keys = f"{g}:keys"
        self._k_users = f"{g}:users"
        self._k_clients = f"{g}:clients"
        self._k_resources = f"{g}:resources"
        self._k_roles = f"{g}:roles"
        self._g = g
        self._scripts: dict[str, AsyncScript] = {}
        self._last_sweep = float("-inf")

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, timeout={self.timeout})"

    # -- key names -------------------------------------------------------------------------
    def shard_tag(self, shard: int) -> str:
        return f"{{{self.prefix}:s{shard}}}"

    def family_key(self, sid: str) -> str:
        return f"{self.shard_tag(shard_of(sid))}:fam:{sid}"

    def tokens_key(self, sid: str) -> str:
        return f"{self.shard_tag(shard_of(sid))}:tok:{sid}"

    def deadline_key(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:deadline"

    def outbox_key(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:out"

    def token_index_key(self, token_hash: bytes) -> str:
        """The index of untagged refresh tokens (token hash -> sid); read-only since tagged
        tokens, kept until the untagged ones expire."""
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
                f"{{{self.prefix}:s*",
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

    async def migrate_layout(self) -> tuple[int, int]:
        """Move data written by versions before the sharded layout into it (idempotent; run
        with no server of an older version writing). Each family ``{p:fam:<sid>}`` and its
        ``{p:fam:<sid>}:tok`` move, with their TTLs, to ``{p:s<n>}:fam:<sid>`` and
        ``{p:s<n>}:tok:<sid>``, its entry of ``{p}:deadline`` to ``{p:s<n>}:deadline``.
        The untagged-token index ``p:rt:<hex>``, the subject indexes and the feed stay.
        Returns (families moved, deadline entries moved)."""

        async def run() -> tuple[int, int]:
            moved = entries = 0
            head = f"{{{self.prefix}:fam:"
            old_deadline = f"{self._g}:deadline"
            async for raw in self._r.scan_iter(match=_glob_escape(head + "*"), count=1000):
                key = _s(raw)
                if not key.endswith("}"):
                    continue  # a ``:tok`` hash: moved with its family
                sid = key[len(head) : -1]
                for old, new in ((key, self.family_key(sid)), (key + ":tok", self.tokens_key(sid))):
                    dump = await self._r.dump(old)
                    if dump is not None:
                        ttl = max(int(await self._r.pttl(old)), 0)
                        if not await self._r.exists(new):
                            await self._r.restore(new, ttl, dump)
                        await self._r.delete(old)
                moved += 1
            # deadline entries, including those of families already expired (purge needs them)
            while True:
                batch: list[Any] = await self._r.zrange(old_deadline, 0, 999, withscores=True)
                if not batch:
                    break
                for pair in batch:
                    sid, score = _s(pair[0]), float(pair[1])
                    await self._r.zadd(self.deadline_key(shard_of(sid)), {sid: score})
                    await self._r.zrem(old_deadline, sid)
                    entries += 1
            return moved, entries

        return await self._call(run, "migrate_layout", timeout=max(self.timeout, 3600.0))

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

    # -- replicated writes (revocations) ---------------------------------------------------
    async def _replicated(self, name: str, keys: Sequence[str], args: Iterable[Any]) -> Any:
        """Run script ``name`` and, with ``wait_replicas``, acknowledge it only once that many
        replicas of its master have it.

        One pipeline on one connection to the master of the keys' slot: ``EVALSHA``, a small
        write to the slot's ``sync`` key, ``WAIT n ms``. ``WAIT`` counts the replicas that
        acknowledged this connection's last write, and a master replicates in order, so the
        count covers the script's write, and a write of the same revocation by another
        connection before it (a retried revocation that finds the family already revoked
        writes nothing itself)."""
        if self.wait_replicas <= 0:
            return await self._script(name, keys, args)
        self._r  # noqa: B018 - make sure the client and scripts exist
        script = self._scripts[name]
        keys, args = list(keys), list(args)
        for attempt in range(2):
            reply = await self._with_wait(
                keys[0], [("EVALSHA", script.sha, len(keys), *keys, *args)]
            )
            if isinstance(reply[0], NoScriptError) and attempt == 0:
                await self._on_master(keys[0], [("SCRIPT", "LOAD", script.script)])
                continue  # the script did not run: send it again
            break
        if isinstance(reply[0], BaseException):
            raise reply[0]
        return reply[0]

    async def _fence(self, key: str) -> None:
        """Acknowledge the writes already made to ``key``'s slot only once ``wait_replicas``
        replicas have them (a write to the slot's ``sync`` key, then ``WAIT``, on one
        connection)."""
        if self.wait_replicas > 0:
            await self._with_wait(key, [])

    async def _with_wait(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` + the sync write + ``WAIT`` on one connection to ``key``'s master;
        the replies of ``commands``. Raises ``StoreUnavailable`` when fewer replicas than
        ``wait_replicas`` acknowledged the writes within ``wait_timeout``."""
        tag = key[: key.index("}") + 1] if key.startswith("{") else key
        ms = max(1, int(self.wait_timeout * 1000))
        sync: tuple[Any, ...] = ("SET", f"{tag}:sync", "1", "PX", 60_000)
        replies = await self._on_master(key, [*commands, sync, ("WAIT", self.wait_replicas, ms)])
        acked = replies[-1]
        if isinstance(acked, BaseException):
            raise acked
        if isinstance(replies[-2], BaseException):
            raise replies[-2]
        if int(acked) < self.wait_replicas:
            raise StoreUnavailable(
                f"revocation not acknowledged: {int(acked)} of {self.wait_replicas} replica(s)"
                f" had it within {self.wait_timeout} s"
            )
        return replies[: len(commands)]

    async def _on_master(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` pipelined on ONE connection to the master of ``key``'s slot;
        their replies (an error reply is the exception, not raised)."""
        async with self._r.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    # -- refresh tokens and families -------------------------------------------------------
    async def create_family(self, family: Family, token: RefreshTokenRecord) -> None:
        sid = family.sid
        fam = _family_fields(family, current_hash=token.token_hash)
        deadline = min(family.expires_at, family.idle_expires_at)
        keys = [self.family_key(sid), self.tokens_key(sid), self.deadline_key(shard_of(sid))]
        sub_keys = [self.subject_key(family.sub)]
        sub_args = [
            sid,
            _num(family.created_at),
            _num(family.expires_at),
            _num(family.created_at),
            _num(self.ttl_margin),
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

        async def run() -> Any:
            # the subject index first: it may list a sid whose family never came, never miss one
            await self._script("SUBJECT_ADD", sub_keys, sub_args)
            return await self._script("CREATE_FAMILY", keys, args)

        result = _s(await self._call(run, "create"))
        if result == "family_exists":
            raise AlreadyExists("a family with this sid exists")

    async def _sid_of(self, token_hash: bytes, sid: str | None) -> str | None:
        """``sid`` when the token names it, else the untagged-token index's answer."""
        if sid is not None:
            return sid
        raw = await self._r.get(self.token_index_key(token_hash))
        return None if raw is None else _s(raw)

    async def get_refresh_token(
        self, token_hash: bytes, *, sid: str | None = None
    ) -> tuple[RefreshTokenRecord, Family] | None:
        async def run() -> tuple[RefreshTokenRecord, Family] | None:
            found_sid = await self._sid_of(token_hash, sid)
            if found_sid is None:
                return None
            keys = [self.family_key(found_sid), self.tokens_key(found_sid)]
            reply = await self._script("READ_RECORD", keys, [token_hash.hex()])
            if not reply:
                return None
            family = _family_from(_pairs(reply[4:]))
            if family.sid != found_sid:  # pragma: no cover - a sid is its keys' name
                return None
            c, p, u, n = (_s(x) for x in reply[:4])
            record = RefreshTokenRecord(
                token_hash=token_hash,
                sid=found_sid,
                created_at=float(c),
                parent_hash=bytes.fromhex(p) if p else None,
                consumed_at=float(u) if u else None,
                successor_hash=bytes.fromhex(n) if n else None,
            )
            return record, family

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
            sid = await self._sid_of(parent_hash, child.sid or None)
            if sid is None:
                return None
            keys = [
                self.family_key(sid),
                self.tokens_key(sid),
                self.deadline_key(shard_of(sid)),
                self.outbox_key(shard_of(sid)),
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
            reply = await self._script("ROTATE", keys, args)
            if _s(reply[0]) == "reused":
                await self._fence(keys[0])  # the family's revocation, as for revoke_family
                seq = await self._seq_of(shard_of(sid), _s(reply[1]))
                return [reply[0], seq, *reply[2:]]
            return reply

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
        async def run() -> int:
            shard = shard_of(sid)
            keys = [self.family_key(sid), self.outbox_key(shard)]
            entry = _s(
                await self._replicated("REVOKE_FAMILY", keys, [sid, _num(now), reason, _num(until)])
            )
            if not entry:
                return 0
            return await self._seq_of(shard, entry)

        seq = await self._call(run, "revoke_family")
        if seq == 0:
            return None
        return RevocationEvent(seq, RevocationKind.SID, sid, float(until), float(now))

    async def revoke_subject(self, sub: str, *, now: float, until: float) -> list[RevocationEvent]:
        # Each family is revoked in its own shard; a family whose creation races with this
        # call was listed before it was created (the index is written first), so it is either
        # revoked here or created after the subject's revocation.
        async def run() -> list[RevocationEvent]:
            sids = sorted(_s(s) for s in await self._r.zrange(self.subject_key(sub), 0, -1))
            entries: dict[int, list[tuple[str, str]]] = {}
            for sid in sids:
                shard = shard_of(sid)
                keys = [self.family_key(sid), self.outbox_key(shard)]
                args = [sid, _num(now), "subject_revoked", _num(until)]
                entry = _s(await self._replicated("REVOKE_FAMILY", keys, args))
                if entry:
                    entries.setdefault(shard, []).append((sid, entry))
            events: list[RevocationEvent] = []
            for shard, pairs in entries.items():
                for sid, entry in pairs:
                    seq = await self._seq_of(shard, entry)
                    events.append(
                        RevocationEvent(seq, RevocationKind.SID, sid, float(until), float(now))
                    )
            events.sort(key=lambda e: e.seq)
            seq = int(
                await self._replicated(
                    "ADD_REVOCATION",
                    [self._k_seq, self._k_stream, self._k_revexp],
                    [RevocationKind.SUB.value, sub, _num(until), _num(now)],
                )
            )
            events.append(RevocationEvent(seq, RevocationKind.SUB, sub, float(until), float(now)))
            return events

        return await self._call(run, "revoke_subject")

    # -- the outbox mover ------------------------------------------------------------------
    async def _move(self, shard: int) -> dict[str, int]:
        """Append the shard's outbox entries to the feed (oldest first) and remove them;
        returns outbox entry id -> seq. Idempotent: an entry moved twice keeps one seq."""
        outbox = self.outbox_key(shard)
        moved: dict[str, int] = {}
        while True:
            entries: list[Any] = await self._r.xrange(outbox, count=500) or []
            for entry_id, fields in entries:
                eid = _s(entry_id)
                f = {_s(k): _s(v) for k, v in fields.items()}
                marker = f"{self._g}:moved:{shard}:{eid}"
                # replicated before the entry leaves the outbox: a failover of the feed's
                # master cannot lose an event whose outbox entry is gone
                moved[eid] = int(
                    await self._replicated(
                        "MOVE_EVENT",
                        [self._k_seq, self._k_stream, self._k_revexp, marker],
                        [f["k"], f["v"], f["u"], f["a"], _MARKER_TTL],
                    )
                )
            if entries:
                await self._r.xdel(outbox, *[e for e, _ in entries])
            if len(entries) < 500:
                return moved

    async def _seq_of(self, shard: int, entry: str) -> int:
        """Move the shard's outbox and return the seq outbox entry ``entry`` got (moved by this
        call, or already by another mover, which set the marker before removing the entry)."""
        moved = await self._move(shard)
        if entry in moved:
            return moved[entry]
        raw = await self._r.get(f"{self._g}:moved:{shard}:{entry}")
        if raw is None:  # pragma: no cover - a marker outlives its entry by a day
            raise StoreUnavailable("a revocation left the outbox without a feed entry")
        return int(raw)

    async def _sweep(self) -> None:
        """Move every shard's outbox (one pipelined look, then only the non-empty ones)."""
        async with self._r.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.xlen(self.outbox_key(shard))
            lengths = await pipe.execute()
        for shard, length in enumerate(lengths):
            if int(length):
                await self._move(shard)
        self._last_sweep = asyncio.get_running_loop().time()

    # -- revocation feed -------------------------------------------------------------------
    async def add_revocation(
        self, kind: RevocationKind, value: str, *, now: float, until: float
    ) -> RevocationEvent:
        kind = RevocationKind(kind)
        keys = [self._k_seq, self._k_stream, self._k_revexp]
        args = [kind.value, value, _num(until), _num(now)]
        seq = int(
            await self._call(
                lambda: self._replicated("ADD_REVOCATION", keys, args), "add_revocation"
            )
        )
        return RevocationEvent(seq, kind, value, float(until), float(now))

    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        async def run() -> list[RevocationEvent]:
            await self._sweep()
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
        async def run() -> Any:
            await self._sweep()
            return await self._r.get(self._k_seq)

        raw = await self._call(run, "revocation_cursor")
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
            if loop.time() - self._last_sweep >= _SWEEP_INTERVAL:
                await self._call(self._sweep, "wait_revocations")
            block_ms = min(block_ms, int(_SWEEP_INTERVAL * 1000))

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
            for shard in range(SHARDS):
                f, t = await self._purge_shard(shard, cutoff)
                families += f
                tokens += t
            return PurgeCounts(tokens, families, revocations)

        return await self._call(run, "purge", timeout=max(self.timeout, 60.0))

    async def _purge_shard(self, shard: int, cutoff: float) -> tuple[int, int]:
        """Purge one shard's dead families; returns (families, refresh tokens)."""
        families = tokens = 0
        deadline = self.deadline_key(shard)
        while True:
            sids = await self._r.zrangebyscore(deadline, "-inf", _num(cutoff), start=0, num=1000)
            for raw_sid in sids:
                sid = _s(raw_sid)
                reply = await self._script(
                    "PURGE_FAMILY",
                    [self.family_key(sid), self.tokens_key(sid), deadline],
                    [sid, _num(cutoff)],
                )
                if not int(reply[0]):
                    continue
                families += 1
                hexes = [_s(h) for h in reply[2:]]
                tokens += len(hexes)
                # outside the script (other slots): the subject index and untagged-token index
                async with self._r.pipeline(transaction=False) as pipe:
                    pipe.zrem(self.subject_key(_s(reply[1])), sid)
                    for h in hexes:
                        pipe.delete(f"{self.prefix}:rt:{h}")
                    await pipe.execute()
            if len(sids) < 1000:
                return families, tokens

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
            raise AlreadyExists(f"resource {ident!r} exists")

    async def update_resource(self, resource: Resource) -> None:
        key = self._resource_key(resource.identifier)
        if not await self._replace_record(key, _resource_blob(resource)):
            raise NotFound(f"unknown resource {resource.identifier!r}")

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
            raise AlreadyExists(f"role {role.name!r} exists")

    async def update_role(self, role: Role) -> None:
        if not await self._replace_record(self._role_key(role.name), _role_blob(role)):
            raise NotFound(f"unknown role {role.name!r}")

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


class RedisClusterStore(RedisStore):
    """``redis+cluster://host:port[,host:port...][?prefix=tw]``: the same store on Redis Cluster,
    through redis-py's cluster client (the nodes listed are where it starts discovering the
    cluster). Every script touches one hash slot, so the layout is the single-node one; a
    command to a slot whose master is down fails closed (``StoreUnavailable``) until a replica
    is promoted. Options as for :class:`RedisStore`; others go to ``RedisCluster``.
    """

    schemes = ("redis+cluster",)
    default_wait_replicas = 1

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.nodes = _cluster_nodes(self.url)

    def __repr__(self) -> str:
        return (
            f"RedisClusterStore(prefix={self.prefix!r}, timeout={self.timeout},"
            f" wait_replicas={self.wait_replicas})"
        )

    async def _on_master(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The commands pipelined on one connection of the slot's master node (the cluster
        pipeline could re-route a redirected command to another node after the others ran,
        and a ``WAIT`` would then count another node's writes). A ``MOVED`` redirection (the
        commands did not run) is followed once; an ``ASK`` (the slot is being migrated) and an
        outage fail closed. Either way the cluster client is told (one ordinary command on the
        key), so that it updates or refreshes its slot map as on any error and the next call
        goes to the slot's new master (a promoted replica), without a restart."""
        from redis.asyncio.cluster import PipelineCommand

        client: Any = self._r
        for attempt in range(2):
            await client.initialize()  # the topology once; a refresh an error asked for
            node = client.get_node_from_key(key)
            queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
            try:
                await node.execute_pipeline(queued)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await self._learn(key)
                raise
            replies = [command.result for command in queued]
            failed = [r for r in replies if isinstance(r, BaseException)]
            if not failed:
                return replies
            if any(isinstance(r, (MovedError, AskError)) for r in failed):
                await self._learn(key)
                if attempt == 0:
                    continue
                raise StoreUnavailable("the slot moved twice during one call")
            if any(isinstance(r, (RedisConnectionError, RedisTimeoutError)) for r in failed):
                await self._learn(key)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def _learn(self, key: str) -> None:
        """One ordinary read of ``key``: the cluster client follows a redirection (updating
        its slot map) or, on a connection error, asks for a topology refresh."""
        from redis.exceptions import RedisError

        with contextlib.suppress(RedisError, OSError):
            await self._r.exists(key)

    def _make(self, *, blocking: bool) -> Any:
        from urllib.parse import unquote, urlsplit

        from redis.asyncio.cluster import ClusterNode, RedisCluster

        parts = urlsplit(self.url)
        kwargs: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in self.nodes],
            "socket_connect_timeout": self.timeout,
            "socket_timeout": None if blocking else self.timeout,
            "retry": Retry(NoBackoff(), 0),  # never re-send a rotation (see the module)
            "max_connections": 16 if blocking else self.max_connections,
            "decode_responses": False,
        }
        if parts.username:
            kwargs["username"] = unquote(parts.username)
        if parts.password:
            kwargs["password"] = unquote(parts.password)
        kwargs.update(self._options)
        return RedisCluster(**kwargs)


def _cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` list of a ``redis+cluster://`` URL."""
    from urllib.parse import urlsplit

    hosts = urlsplit(url).netloc.rsplit("@", 1)[-1]
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"redis+cluster URL: {item.strip()!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


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


_OWN_OPTIONS = ("prefix", "wait_replicas", "wait_timeout")


def _url_prefix(url: str, prefix: str) -> tuple[str, str]:
    """The URL without the store's own query options (redis-py would pass them to the
    connection), and its ``prefix=`` (else ``prefix``)."""
    url, given = _url_options(url, _OWN_OPTIONS)
    return url, given.get("prefix", prefix)


def _url_options(url: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Take the store's own options (``prefix=`` ...) out of the URL's query (redis-py would
    pass them to the connection); the URL without them, and their values (the last wins)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {k: v for k, v in query if k in names}
    if not given:
        return url, {}
    rest = urlencode([(k, v) for k, v in query if k not in names])
    return urlunsplit(parts._replace(query=rest)), given

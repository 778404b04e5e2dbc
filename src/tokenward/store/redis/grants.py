"""Authorization-code / OpenID Connect records of :class:`~tokenward.store.redis.RedisStore`.

Key layout for ``prefix="tw"`` (all in the global ``{tw}`` slot)::

    {tw}:gr:<kind>:<key>        hash  owner, data (JSON), exp ("" = none), v (version)
    {tw}:gri:<kind>:<owner>     set   keys indexed under owner (stale members pruned on read)
    {tw}:grexp                  zset  "<kind>\\x00<key>" -> exp (purge index)

Expiry is logical (the caller's ``now``, like the rest of the store), so frozen test clocks and
server clocks agree; ``purge_records`` deletes what has expired. Create and compare-and-set are
Lua scripts (atomic on the server).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from ..base import GrantRecord

__all__ = ["RedisGrantRecordsMixin"]

T = TypeVar("T")

_CREATE = """
local e = redis.call('HGET', KEYS[1], 'exp')
if e then
  if e == '' or tonumber(e) > tonumber(ARGV[1]) then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'data', ARGV[3], 'exp', ARGV[4], 'v', 0)
redis.call('SADD', KEYS[2], ARGV[6])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return 1
"""

_UPDATE = """
local h = redis.call('HMGET', KEYS[1], 'v', 'exp')
if not h[1] then return 0 end
if h[2] ~= '' and tonumber(h[2]) <= tonumber(ARGV[1]) then return 0 end
if tonumber(h[1]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'exp', ARGV[4], 'v', tonumber(ARGV[2]) + 1)
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return 1
"""

_DELETE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('ZREM', KEYS[2], ARGV[1])
if not owner then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. owner, ARGV[3])
return 1
"""

# delete one record found in the purge index if it is still expired at ARGV[1]
_PURGE_ONE = """
local h = redis.call('HMGET', KEYS[1], 'exp', 'owner')
if not h[2] then redis.call('ZREM', KEYS[2], ARGV[2]) return 0 end
if h[1] == '' or tonumber(h[1]) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SREM', ARGV[3] .. h[2], ARGV[4])
return 1
"""


def _exp(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisGrantRecordsMixin:
    """Needs ``_g``, ``_r`` and ``_call`` from the store class."""

    _g: str

    @property
    def _r(self) -> Redis:
        raise NotImplementedError

    async def _call(
        self, op: Callable[[], Awaitable[T]], what: str, *, timeout: float | None = None
    ) -> T:
        raise NotImplementedError

    def _gr_key(self, kind: str, key: str) -> str:
        return f"{self._g}:gr:{kind}:{key}"

    def _gr_index_prefix(self, kind: str) -> str:
        return f"{self._g}:gri:{kind}:"

    @property
    def _gr_exp(self) -> str:
        return f"{self._g}:grexp"

    async def _gr_eval(self, script: str, keys: list[str], args: list[Any]) -> int:
        async def run() -> int:
            return int(await self._r.eval(script, len(keys), *keys, *args))

        return await self._call(run, "grant record")

    async def create_record(self, record: GrantRecord, *, now: float) -> bool:
        keys = [
            self._gr_key(record.kind, record.key),
            self._gr_index_prefix(record.kind) + record.owner,
            self._gr_exp,
        ]
        args = [
            repr(float(now)),
            record.owner,
            orjson.dumps(record.data),
            _exp(record.expires_at),
            f"{record.kind}\x00{record.key}",
            record.key,
        ]
        return bool(await self._gr_eval(_CREATE, keys, args))

    def _parse(self, kind: str, key: str, raw: dict[Any, Any], now: float) -> GrantRecord | None:
        if not raw:
            return None
        d = {_str(k): v for k, v in raw.items()}
        exp = _str(d["exp"])
        record = GrantRecord(
            kind=kind,
            key=key,
            owner=_str(d["owner"]),
            data=orjson.loads(d["data"]),
            expires_at=float(exp) if exp else None,
            version=int(d["v"]),
        )
        return None if record.expired(now) else record

    async def get_record(self, kind: str, key: str, *, now: float) -> GrantRecord | None:
        raw = await self._call(lambda: self._r.hgetall(self._gr_key(kind, key)), "get_record")
        return self._parse(kind, key, raw, now)

    async def update_record(self, record: GrantRecord, *, now: float) -> bool:
        keys = [self._gr_key(record.kind, record.key), self._gr_exp]
        args = [
            repr(float(now)),
            record.version,
            orjson.dumps(record.data),
            _exp(record.expires_at),
            f"{record.kind}\x00{record.key}",
        ]
        return bool(await self._gr_eval(_UPDATE, keys, args))

    async def delete_record(self, kind: str, key: str) -> bool:
        keys = [self._gr_key(kind, key), self._gr_exp]
        args = [f"{kind}\x00{key}", self._gr_index_prefix(kind), key]
        return bool(await self._gr_eval(_DELETE, keys, args))

    async def list_records(self, kind: str, owner: str, *, now: float) -> list[GrantRecord]:
        index = self._gr_index_prefix(kind) + owner

        async def run() -> list[GrantRecord]:
            members = sorted(_str(m) for m in await self._r.smembers(index))
            if not members:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for m in members:
                    pipe.hgetall(self._gr_key(kind, m))
                raws = await pipe.execute()
            out: list[GrantRecord] = []
            stale: list[str] = []
            for m, raw in zip(members, raws, strict=True):
                rec = self._parse(kind, m, raw, now)
                if rec is None or rec.owner != owner:
                    if not raw or _str(raw.get(b"owner", b"")) != owner:
                        stale.append(m)
                    continue
                out.append(rec)
            if stale:
                await self._r.srem(index, *stale)
            return out

        return await self._call(run, "list_records")

    async def purge_records(self, *, now: float) -> int:
        async def due() -> list[bytes]:
            got = await self._r.zrangebyscore(
                self._gr_exp, "-inf", repr(float(now)), start=0, num=1000
            )
            return [m if isinstance(m, bytes) else str(m).encode() for m in got]

        gone = 0
        while True:
            members = await self._call(due, "purge_records")
            if not members:
                return gone
            for raw in members:
                kind, _, key = _str(raw).partition("\x00")
                gone += await self._gr_eval(
                    _PURGE_ONE,
                    [self._gr_key(kind, key), self._gr_exp],
                    [repr(float(now)), _str(raw), self._gr_index_prefix(kind), key],
                )
            if len(members) < 1000:
                return gone

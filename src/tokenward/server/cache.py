"""The per-process caches of the hot paths (``/userinfo``, ``/introspect``, ``/healthz``), so a
request answers without a store round trip when the token already proves what is asked:

* :class:`RecordCache` — user and client records for ``TOKENWARD_RECORD_CACHE_TTL`` seconds
  (5 s; 0 turns it off), bounded (oldest entry out first). A write of a user or a client
  through this process's store (:func:`watch_writes`: create, update, delete, and a subject's
  revocation) drops the cache at once; a subject revoked by *another* instance drops its entry
  when the revocation feed brings the event; any other change made elsewhere (a profile, a
  role, a client secret rotated by another instance or the CLI) is seen within the TTL. A
  value read while a write dropped the cache is not kept (no stale re-fill).
* :class:`StoreHealth` — "the store answered a ping less than ``max_age`` seconds ago", with
  one ping in flight at a time shared by every request waiting on it, started in the
  background once half of ``max_age`` has passed (steady traffic never waits for a ping); a
  failure is never remembered (the next request pings again).

Both measure their windows in elapsed time (``time.monotonic``; injectable), not with the
token clock: they bound how long an operational fact may be reused, not a token's lifetime.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import wraps
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import StoreUnavailable

if TYPE_CHECKING:
    from ..store.base import Store

__all__ = ["RecordCache", "StoreHealth", "watch_writes"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Timer = Callable[[], float]


class RecordCache(Generic[K, V]):
    """``key → value`` (``None`` included: "no such record") for ``ttl`` seconds, at most
    ``max_entries``. ``ttl <= 0``: nothing is kept, every lookup loads."""

    def __init__(
        self, *, ttl: float, max_entries: int = 10_000, timer: Timer = time.monotonic
    ) -> None:
        self.ttl = float(ttl)
        self.max_entries = max(1, int(max_entries))
        self.timer = timer
        self._data: OrderedDict[K, tuple[float, V | None]] = OrderedDict()
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has an entry (expired or not: it is dropped when next looked up)."""
        return key in self._data

    async def get(self, key: K, load: Callable[[K], Awaitable[V | None]]) -> V | None:
        """The cached value of ``key``, else ``await load(key)`` (kept unless the cache was
        dropped meanwhile)."""
        if self.ttl > 0:
            found = self._data.get(key)
            if found is not None:
                expires, value = found
                if self.timer() < expires:
                    self.hits += 1
                    return value
                del self._data[key]
        self.misses += 1
        generation = self._generation
        value = await load(key)
        if self.ttl > 0 and generation == self._generation:
            self._data[key] = (self.timer() + self.ttl, value)
            if len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def invalidate(self, key: K) -> None:
        self._generation += 1
        self._data.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._data.clear()


class StoreHealth:
    """Whether the store answered a ping within the last ``max_age`` seconds."""

    def __init__(self, ping: Callable[[], Awaitable[None]], *, timer: Timer = time.monotonic):
        self._ping = ping
        self.timer = timer
        self._ok_at = -float("inf")
        self._inflight: asyncio.Future[None] | None = None

    async def check(self, max_age: float) -> None:
        """Return when the store answered within ``max_age`` s (else ping it now); raise
        :class:`StoreUnavailable` when it does not answer. Past half of ``max_age`` a ping
        starts in the background, so under steady traffic no request waits for one."""
        age = self.timer() - self._ok_at
        if age <= max_age:
            if age > max_age / 2 and self._inflight is None:
                self._inflight = asyncio.ensure_future(self._run())
                self._inflight.add_done_callback(_retrieve)
            return
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._run())
            self._inflight.add_done_callback(_retrieve)
        await asyncio.shield(self._inflight)

    async def _run(self) -> None:
        started = self.timer()
        try:
            await self._ping()
        except StoreUnavailable:
            raise
        except Exception as exc:  # a driver error we did not map: still "unavailable"
            raise StoreUnavailable("store unreachable") from exc
        else:
            self._ok_at = started
        finally:
            self._inflight = None


def _retrieve(task: asyncio.Future[None]) -> None:
    """A background ping's failure is not an unhandled error: the next check pings again."""
    if not task.cancelled():
        task.exception()


_USER_WRITES = ("create_user", "update_user", "delete_user")
_CLIENT_WRITES = ("create_client", "update_client", "delete_client")


def watch_writes(
    store: Store,
    *,
    users: RecordCache[str, Any],
    clients: RecordCache[str, Any],
) -> None:
    """Drop ``users`` / ``clients`` whenever this store object writes a user / a client (the
    cache goes before and after the write: a lookup racing it cannot keep the old record),
    and the entry of a subject when it is revoked (``revoke_subject``)."""

    def around(name: str, drop: Callable[[Any, Any], None]) -> None:
        inner = getattr(store, name)

        @wraps(inner)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            first = args[0] if args else None
            drop(first, kwargs)
            try:
                return await inner(*args, **kwargs)
            finally:
                drop(first, kwargs)

        setattr(store, name, wrapped)

    for name in _USER_WRITES:
        around(name, lambda _a, _k: users.clear())
    for name in _CLIENT_WRITES:
        around(name, lambda _a, _k: clients.clear())
    around("revoke_subject", lambda sub, k: users.invalidate(sub if sub else k.get("sub")))

"""Brute-force protection for the password grant and ``/login`` (RFC 6749 §4.3.2).

Failed attempts are counted per (account, client network), per account in all (a much higher
ceiling) and per client IP with the ``limits`` library (moving window). When a budget is spent
the next attempt is refused *before* the password is checked (the account's attempt on the
caller's network is reserved atomically before the check, so concurrent guesses cannot overrun
it): ``RateLimited`` (HTTP 429 + ``Retry-After``) and a ``login_throttled`` security event. A
successful login clears the account's counter on that network (not the ceiling, not the IP's).

Backends: in-process memory (one instance, the embedded SQLite default) or Redis, shared by
every instance (chosen from the store URL unless ``ratelimit_url`` says otherwise). A storage
that fails or does not answer within ``timeout`` fails closed: ``StoreUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ..errors import RateLimited, StoreUnavailable
from ..store.base import Store
from .addresses import address_prefix
from .usernames import fold, valid

__all__ = ["LoginThrottle", "storage_url_for"]

_events = structlog.get_logger("tokenward.events")
T = TypeVar("T")


STORE = "store"  # storage_url_for's answer: count in the server's own store


def storage_url_for(store_url: str, override: str | None = None) -> str:
    """Where the login budgets are counted: ``override`` (a ``limits`` storage URL); Redis
    when the store is Redis; the store itself (:data:`STORE`) when it is SQLite or PostgreSQL,
    so every ``--workers`` process and every instance share one budget; memory for the
    memory store (one process anyway)."""
    if override:
        return override if override.startswith("async+") else "async+" + override
    scheme = store_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        from ..store.redis.store import _url_prefix

        return "async+" + _url_prefix(store_url, "")[0]  # the store's ?prefix= is not for limits
    if scheme.startswith(("sqlite", "postgres")) or scheme == "redis+cluster":
        return STORE
    return "async+memory://"


@dataclass(frozen=True, slots=True)
class _Stats:
    reset_time: float


class StoreLimiter:
    """The four calls of ``limits``' moving-window limiter this module uses, counted in a
    :class:`Store` (``rate_hit``/``rate_window``/``rate_clear``): shared by every process."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _k(item: RateLimitItem, key: str) -> str:
        return f"{key}:{item.amount}/{item.get_expiry()}"

    async def test(self, item: RateLimitItem, key: str) -> bool:
        n, _ = await self.store.rate_window(
            self._k(item, key), now=time.time(), window=item.get_expiry()
        )
        return n < item.amount

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return await self.store.rate_hit(
            self._k(item, key), now=time.time(), window=item.get_expiry(), limit=item.amount
        )

    async def clear(self, item: RateLimitItem, key: str) -> None:
        await self.store.rate_clear(self._k(item, key))

    async def get_window_stats(self, item: RateLimitItem, key: str) -> _Stats:
        _, reset = await self.store.rate_window(
            self._k(item, key), now=time.time(), window=item.get_expiry()
        )
        return _Stats(reset)


def _key(kind: str, value: str) -> str:
    # hashed so that usernames and addresses never appear as keys in a shared Redis
    return kind + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _name(username: str) -> str:
    """One budget per account whatever the spelling: ``Alice`` and ``alice`` are one name."""
    return fold(username) if valid(username) else username


class LoginThrottle:
    """Limits on failed logins: per (account, client network), per account in all (a much
    higher ceiling) and per IP.

    Lock-out fairness: the per-account budget (``per_account``) is kept per *network* of the
    caller (its address prefix, ``/24`` / ``/48`` by default), so an attacker elsewhere who
    spends it does not lock the owner out of their own network. ``account_ceiling`` (far
    higher) still bounds the guesses at one account from everywhere together; an attacker who
    controls enough networks to spend it does lock the account out until the window passes
    (the trade-off: a lower ceiling means easier lock-outs, a higher one more guesses)."""

    def __init__(
        self,
        *,
        per_account: str = "5/minute",
        per_ip: str = "30/minute",
        account_ceiling: str = "100/minute;1000/hour",
        storage_url: str = "async+memory://",
        timeout: float = 2.0,
        prefix: Callable[[str], str] = address_prefix,
        store: Store | None = None,
    ) -> None:
        self._timeout = timeout
        options: dict[str, str] = {}
        if storage_url.startswith(("async+redis", "async+rediss")):
            options["implementation"] = "redispy"
            options["key_prefix"] = "tokenward-ratelimit"
        self._limiter: MovingWindowRateLimiter | StoreLimiter
        if storage_url == STORE:
            if store is None:
                raise ValueError("a store-backed login throttle needs the store")
            self._limiter = StoreLimiter(store)
        else:
            self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url, **options))
        self._account: list[RateLimitItem] = parse_many(per_account)
        self._ceiling: list[RateLimitItem] = parse_many(account_ceiling)
        self._ip: list[RateLimitItem] = parse_many(per_ip)
        self._prefix = prefix

    def _account_key(self, username: str, ip: str | None) -> str:
        network = self._prefix(ip) if ip else "-"
        return _key("account", _name(username) + "\x00" + network)

    def _budgets(self, username: str, ip: str | None) -> list[tuple[RateLimitItem, str]]:
        out = [(item, self._account_key(username, ip)) for item in self._account]
        out += [(item, _key("ceiling", _name(username))) for item in self._ceiling]
        if ip:
            out += [(item, _key("ip", ip)) for item in self._ip]
        return out

    async def _call(self, op: Awaitable[T]) -> T:
        """One storage call, bounded; a broken or silent storage fails closed (503)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except Exception as exc:  # redis errors, timeouts, OSError: the storage is down
            raise StoreUnavailable(f"login throttle unavailable ({type(exc).__name__})") from None

    async def _refuse(self, item: RateLimitItem, key: str, ip: str | None) -> None:
        stats: Any = await self._call(self._limiter.get_window_stats(item, key))
        retry = max(1, math.ceil(float(stats.reset_time) - time.time()))
        _events.warning(
            "login_throttled",
            by=key.split(":", 1)[0],  # account (per network), ceiling (all networks), ip
            ip=ip,
            retry_after=retry,
        )
        raise RateLimited("too many sign-in attempts", retry_after=retry)

    async def check(self, username: str, ip: str | None) -> None:
        """Raise ``RateLimited`` when this account or IP has no attempts left.

        The account's attempt is *reserved* here (an atomic ``hit``), not counted after the
        password check: otherwise N concurrent guesses all pass the test before the first
        failure is recorded and the per-account limit does not hold. A successful login
        clears the account's counter, so only failed attempts stay counted."""
        for item, key in self._budgets(username, ip):
            if not await self._call(self._limiter.test(item, key)):
                await self._refuse(item, key, ip)
        key = self._account_key(username, ip)
        for item in self._account:
            if not await self._call(self._limiter.hit(item, key)):
                await self._refuse(item, key, ip)  # a concurrent attempt took the last one

    async def failed(self, username: str, ip: str | None) -> None:
        """Count a failed attempt against the account's ceiling and the IP (the account's
        per-network attempt was reserved by ``check``)."""
        for item in self._ceiling:
            await self._call(self._limiter.hit(item, _key("ceiling", _name(username))))
        if ip:
            for item in self._ip:
                await self._call(self._limiter.hit(item, _key("ip", ip)))

    async def succeeded(self, username: str, ip: str | None = None) -> None:
        """A successful login gives the account its budget on the caller's network back (the
        ceiling counts failures only and is not cleared)."""
        key = self._account_key(username, ip)
        for item in self._account:
            await self._call(self._limiter.clear(item, key))

"""The revocation mirror: a local :class:`~tokenward.revocation.Denylist` kept live from a
revocation feed, with one staleness rule. The server and the guard use this same class; only
the *source* of the feed differs:

* :class:`StoreFeedSource` — in-process, from a store's feed (the server, or any process
  that shares the store): a snapshot, then ``store.wait_revocations`` (long-poll,
  ``XREAD BLOCK``, ``LISTEN``);
* ``tokenward.guard.mirror.HttpFeedSource`` — remotely, from the server's
  ``GET /revocations`` (long-poll or SSE).

**Staleness (one rule, everywhere).** ``last_sync`` is the time of the last answer from the
source (even an empty one). While ``now - last_sync <= max_staleness`` (default 60 s) the
mirror is trusted. Past it — or before the first snapshot — :meth:`RevocationMirror.check`
raises :class:`~tokenward.errors.StoreUnavailable` (HTTP 503 with ``Retry-After``): the token
may well be valid, we cannot tell whether it was revoked, so the client is told to retry, not
to re-authenticate (never a 401 for staleness). With ``fail_closed=False`` verification goes
on with the last known state and a warning is logged once per staleness period.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._logging import get_logger
from .clock import Clock, system_clock
from .errors import ConfigurationError, StoreUnavailable, TokenwardError
from .events import log_quietly
from .feed import RevocationEvent
from .revocation import Denylist, staleness_error

if TYPE_CHECKING:
    from .claims import AccessTokenClaims
    from .store.base import RevocationFeedStore

__all__ = [
    "DEFAULT_MAX_STALENESS",
    "DenylistFollower",
    "RevocationMirror",
    "RevocationSource",
    "StoreFeedSource",
    "staleness_error",
]

DEFAULT_MAX_STALENESS = 60.0

_log = get_logger("tokenward.mirror")


class RevocationSource(ABC):
    """Where a mirror's events come from."""

    @abstractmethod
    async def sync(self, mirror: RevocationMirror) -> int:
        """One step: a snapshot when the mirror has none (or must reload), else wait for the
        next events. Calls ``mirror.apply`` / ``mirror.mark_synced`` / ``mirror.reset``;
        returns the number of events applied; raises when the feed cannot be read."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class RevocationMirror:
    """A denylist kept live from a :class:`RevocationSource`; ``check(claims)`` is the
    verifier's revocation hook (``Verifier(revocation=mirror)``)."""

    def __init__(
        self,
        source: RevocationSource,
        *,
        clock: Clock = system_clock,
        max_staleness: float = DEFAULT_MAX_STALENESS,
        fail_closed: bool = True,
        denylist: Denylist | None = None,
        backoff: float = 0.1,
        max_backoff: float | None = None,
    ) -> None:
        if max_staleness <= 0:
            raise ConfigurationError("max_staleness must be positive")
        self.source = source
        self.clock = clock
        self.max_staleness = float(max_staleness)
        self.fail_closed = bool(fail_closed)
        # staleness is judged here (503), so the denylist itself never is
        self.denylist = denylist if denylist is not None else Denylist(clock=clock)
        self.backoff = float(backoff)
        # a retry must come well inside the staleness limit
        self.max_backoff = (
            float(max_backoff)
            if max_backoff is not None
            else max(0.5, min(5.0, self.max_staleness / 4))
        )
        self._synced_once = False
        self._warned_at = -math.inf
        self._task: asyncio.Task[None] | None = None
        #: clock time of the last answer from the source
        self.last_sync = -math.inf
        self.events_applied = 0
        self.last_lag: float | None = None  # now - event.at for the newest event applied
        self.failures = 0
        self.reloads = 0
        self.last_error: str | None = None

    # -- the hot path ---------------------------------------------------------------------
    @property
    def cursor(self) -> int:
        """The feed cursor: the highest ``seq`` applied (or the source's head)."""
        return self.denylist.cursor

    @cursor.setter
    def cursor(self, value: int) -> None:
        self.denylist.cursor = value

    @property
    def synced(self) -> bool:
        return self._synced_once

    @property
    def stale(self) -> bool:
        return self.clock.now() - self.last_sync > self.max_staleness

    def check(self, claims: AccessTokenClaims) -> None:
        """Raise ``RevokedToken`` (revoked) or ``StoreUnavailable`` (mirror too stale)."""
        error = staleness_error(
            now=self.clock.now(),
            last_sync=self.last_sync if self._synced_once else None,
            max_staleness=self.max_staleness,
        )
        if error is not None:
            self._on_stale(error)
        self.denylist.check(claims)

    def _on_stale(self, error: StoreUnavailable) -> None:
        if self.fail_closed:
            raise error
        now = self.clock.now()
        if now - self._warned_at > self.max_staleness:
            self._warned_at = now
            log_quietly(_log, "warning", "revocation_mirror_stale", fail_closed=False)

    # -- what sources call ----------------------------------------------------------------
    def apply(self, events: Iterable[RevocationEvent]) -> int:
        """Apply events in order (those at or below the cursor are ignored); returns how many
        were new."""
        fresh = [e for e in events if e.seq > self.cursor]
        if not fresh:
            return 0
        self.denylist.apply(fresh)
        self.events_applied += len(fresh)
        self.last_lag = self.clock.now() - fresh[-1].at
        return len(fresh)

    def mark_synced(self) -> None:
        self.last_sync = self.clock.now()
        self.denylist.mark_synced(self.last_sync)
        self._synced_once = True
        self.last_error = None

    def reset(self, reason: str) -> None:
        """Drop the state (the source's feed went backwards: a new or restored store)."""
        self.reloads += 1
        log_quietly(_log, "warning", "revocation_feed_reset", reason=reason, cursor=self.cursor)
        self.denylist.clear()

    # -- following ------------------------------------------------------------------------
    async def step(self) -> int:
        """One step of the source; raises what the source raises."""
        return await self.source.sync(self)

    async def sync(self) -> bool:
        """One step; ``False`` (after logging and recording :attr:`last_error`) on failure."""
        try:
            await self.step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self.last_error = _describe(exc)
            log_quietly(_log, "warning", "revocation_feed_error", error=self.last_error)
            return False
        return True

    async def run(self) -> None:
        """Follow the source until cancelled: snapshot, then the tail; retry with backoff."""
        delay = self.backoff
        try:
            while True:
                if await self.sync():
                    delay = self.backoff
                    continue
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
        finally:
            await self.aclose()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Follow in a task of the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="tokenward-revocation-mirror"
            )
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        await self.source.aclose()


class StoreFeedSource(RevocationSource):
    """A store's feed, in-process: a snapshot (:meth:`Denylist.load`), then
    ``store.wait_revocations(cursor)``. It reloads the snapshot when

    * the first event of a batch has ``seq > cursor + 1`` — events in between are missing (a
      correct store only deletes events after their ``until``, harmless to skip, but a store
      that trims its feed may have dropped live ones);
    * the store's own cursor is *below* ours — the store was reset or restored from a backup.

    Every successful read marks the mirror synced, so ``wait_timeout`` must be shorter than
    the mirror's ``max_staleness``.
    """

    def __init__(self, store: RevocationFeedStore, *, wait_timeout: float = 5.0) -> None:
        self.store = store
        self.wait_timeout = float(wait_timeout)
        self._need_snapshot = True

    async def sync(self, mirror: RevocationMirror) -> int:
        dl = mirror.denylist
        if self._need_snapshot:
            before = len(dl)
            await dl.load(self.store)
            self._need_snapshot = False
            mirror.mark_synced()
            return max(len(dl) - before, 0)
        events = await self.store.wait_revocations(
            dl.cursor, now=mirror.clock.now, timeout=self.wait_timeout
        )
        if not events:
            if await self.store.revocation_cursor() < dl.cursor:
                return await self._reload(mirror, "store cursor went backwards")
            mirror.mark_synced()
            return 0
        if events[0].seq > dl.cursor + 1 and dl.cursor > 0:
            return await self._reload(mirror, "gap in the revocation feed")
        applied = mirror.apply(events)
        mirror.mark_synced()
        return applied

    async def _reload(self, mirror: RevocationMirror, why: str) -> int:
        mirror.reloads += 1
        log_quietly(_log, "info", "denylist_reload", reason=why, cursor=mirror.cursor)
        self._need_snapshot = True
        return await self.sync(mirror)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TokenwardError):
        return exc.description
    if isinstance(exc, ValueError):
        return f"malformed feed answer: {exc}"
    return type(exc).__name__


class DenylistFollower(RevocationMirror):
    """A mirror over a store's feed into a given :class:`Denylist` (which judges its own
    staleness with the same rule, when it has a ``max_staleness``). Prefer
    ``RevocationMirror(StoreFeedSource(store))``."""

    def __init__(
        self,
        store: RevocationFeedStore,
        denylist: Denylist,
        *,
        clock: Clock | None = None,
        wait_timeout: float = 5.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__(
            StoreFeedSource(store, wait_timeout=wait_timeout),
            clock=clock if clock is not None else denylist.clock,
            max_staleness=denylist.max_staleness or math.inf,
            denylist=denylist,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._feed = StoreFeedSource(store, wait_timeout=wait_timeout)
        self.source = self._feed

    @property
    def store(self) -> RevocationFeedStore:
        return self._feed.store

    @store.setter
    def store(self, store: RevocationFeedStore) -> None:
        self._feed.store = store

    @property
    def errors(self) -> int:
        return self.failures

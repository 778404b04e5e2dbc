"""One follow loop per store per process, fanned out to any number of in-memory waiters.

``Store.wait_revocations`` costs something per caller: on Redis each blocked ``XREAD`` holds a
connection of a fixed blocking pool, on SQLite each caller polls the database every 0.2 s.
A feed endpoint serving many subscribers must not call it once per subscriber.
:class:`FeedFanout` has the same ``wait_revocations`` signature, but behind it one task follows
the store (one ``XREAD``/poller/``LISTEN`` waiter) into a bounded in-memory buffer of recent
events, and every waiter waits on an ``asyncio.Event``: a new event wakes them all, each
takes the buffered events after its own cursor. A cursor older than the buffer is answered
by an ordinary (non-blocking) ``revocations_after`` read.

When the store fails, the loop records the error and wakes the waiters, which raise
``StoreUnavailable`` (the feed answers 503 / ``event: error``); the loop retries after a
pause and clears the error on its next successful read.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StoreUnavailable
from ..feed import RevocationEvent

if TYPE_CHECKING:
    from .base import Store

__all__ = ["FeedFanout"]

_BLOCK = 15.0  # seconds per blocking read of the loop
_RETRY = 1.0  # pause after a failed read


class FeedFanout:
    """``await fanout.wait_revocations(cursor, now=..., timeout=...)`` for any number of
    concurrent callers, one store follower behind them. Start-up is lazy (the first waiter);
    :meth:`close` stops the loop."""

    def __init__(self, store: Store, *, buffer: int = 4096) -> None:
        self.store = store
        self._buffer = buffer
        self._events: list[RevocationEvent] = []
        self._seqs: list[int] = []  # the events' seqs, ascending (bisect)
        self._head: int | None = None  # every event with seq <= head has been seen
        self._complete_after = 0  # the buffer holds every event with seq > this
        self._signal = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._now: Callable[[], float] | None = None
        self.waiters = 0

    def _notify(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    def _ensure_running(self, now: Callable[[], float]) -> None:
        if self._now is None:
            self._now = now
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="tokenward-feed-fanout")

    async def _run(self) -> None:
        assert self._now is not None
        while True:
            try:
                if self._head is None:
                    self._head = self._complete_after = await self.store.revocation_cursor()
                    self._error = None
                    self._notify()
                events = await self.store.wait_revocations(
                    self._head, now=self._now, timeout=_BLOCK
                )
                self._error = None
                fresh = [e for e in events if e.seq > self._head]
                if fresh:
                    self._events.extend(fresh)
                    self._seqs.extend(e.seq for e in fresh)
                    if len(self._events) > 2 * self._buffer:  # keep the newest ``buffer``
                        cut = len(self._events) - self._buffer
                        self._complete_after = self._seqs[cut - 1]
                        del self._events[:cut], self._seqs[:cut]
                    self._head = fresh[-1].seq
                    self._notify()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error = exc
                self._notify()
                await asyncio.sleep(_RETRY)

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        """Events after ``cursor`` (and live at ``now()``), waiting up to ``timeout`` seconds
        for the first; ``[]`` when none came. Raises ``StoreUnavailable`` while the follower
        cannot read the store."""
        self._ensure_running(now)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.waiters += 1
        try:
            while True:
                if self._error is not None:
                    raise StoreUnavailable(
                        f"revocation feed unavailable ({type(self._error).__name__})"
                    )
                if self._head is not None:
                    if cursor < self._complete_after:
                        # older than the buffer: one ordinary read, then follow the buffer
                        events = await self.store.revocations_after(cursor, now=now())
                        if events:
                            return events
                        cursor = self._complete_after
                    t = now()
                    start = bisect.bisect_right(self._seqs, cursor)
                    live = [e for e in self._events[start:] if e.until > t]
                    if live:
                        return live
                left = deadline - loop.time()
                if left <= 0:
                    return []
                signal = self._signal
                try:
                    async with asyncio.timeout(left):
                        await signal.wait()
                except TimeoutError:
                    return []
        finally:
            self.waiters -= 1

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

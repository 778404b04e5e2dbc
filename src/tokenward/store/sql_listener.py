"""PostgreSQL ``LISTEN tokenward_revocations`` on a dedicated connection.

:class:`PgListener` runs one background task per store that holds a psycopg connection in
autocommit mode, listens on :data:`NOTIFY_CHANNEL` and, on every notification, wakes all
waiters at once (an :class:`asyncio.Event` that is swapped for a fresh one). The store's
transactions ``NOTIFY`` in the same transaction as each revocation insert, so the wake-up
arrives exactly when the event becomes visible. Waiters always re-read the table (the
notification is only a hint), and poll while the listener is (re)connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["NOTIFY_CHANNEL", "PgListener"]

NOTIFY_CHANNEL = "tokenward_revocations"
T = TypeVar("T")
_HEALTH_INTERVAL = 15.0  # seconds between liveness checks of an idle listening connection


class PgListener:
    """Wakes waiters on ``NOTIFY``; reconnects with backoff after any connection error."""

    def __init__(self, conninfo: str, *, connect_timeout: int = 2) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self.wakeup = asyncio.Event()
        self.ready = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.ready = False
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait(
        self,
        fetch: Callable[[], Awaitable[list[T]]],
        *,
        timeout: float,
        poll_interval: float,
        recheck: float = 1.0,
    ) -> list[T]:
        """``fetch()`` until it returns something or ``timeout`` passes; between fetches wait
        for a notification (re-checking every ``recheck`` s anyway), or poll every
        ``poll_interval`` s while not listening."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wakeup, listening = self.wakeup, self.ready  # taken before the fetch
            found = await fetch()
            if found:
                return found
            left = deadline - loop.time()
            if left <= 0:
                return []
            step = min(left, recheck if listening else poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), step)

    def _fire(self) -> None:
        wakeup, self.wakeup = self.wakeup, asyncio.Event()
        wakeup.set()

    async def _run(self) -> None:
        import psycopg

        backoff = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
                )
                try:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.ready = True
                    backoff = 0.05
                    self._fire()  # waiters re-read once now that nothing can be missed
                    while True:
                        async for _ in conn.notifies(timeout=_HEALTH_INTERVAL):
                            self._fire()
                        async with asyncio.timeout(self._connect_timeout):
                            await conn.execute("SELECT 1")
                finally:
                    self.ready = False
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: poll, then reconnect
                self._fire()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

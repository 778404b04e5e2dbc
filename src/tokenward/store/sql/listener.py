"""PostgreSQL ``LISTEN tokenward_revocations`` on a dedicated connection.

The store ``NOTIFY``s in the same transaction as each revocation insert, so a notification is
delivered exactly when (and only if) its events are committed, in commit order — which is
``seq`` order, because ``seq`` comes from a counter row locked until commit. The payload
(:func:`notify_payload`) names the store's schema and carries the events themselves
(``{"s": schema, "n": last_seq, "e": [[seq, kind, value, until, at], ...]}``), or only the
last ``seq`` when the events do not fit PostgreSQL's 8000-byte payload limit.

:class:`PgListener` runs one background task per store that holds a psycopg connection in
autocommit mode and, on every notification *for its schema*, keeps the events in a small
buffer and wakes all waiters at once (an :class:`asyncio.Event` swapped for a fresh one).
Right after ``LISTEN`` it reads the revocation counter: every commit before that is covered
by the counter, every one after by a notification, so :attr:`PgListener.latest` is the highest
committed ``seq`` as long as the connection stays up. A waiter whose cursor is followed by a
contiguous run of buffered events returns them without a query; when its cursor is at or past
``latest`` it reads nothing either; otherwise it reads the table (the notification was only a
hint, e.g. a batch too large for the payload). As a safety net it also re-reads every
``recheck`` seconds, and it polls while the listener is (re)connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import orjson

from ..base import RevocationEvent, RevocationKind
from .schema import REVOCATION_COUNTER

__all__ = ["MAX_PAYLOAD", "NOTIFY_CHANNEL", "PgListener", "notify_payload"]

NOTIFY_CHANNEL = "tokenward_revocations"
_HEALTH_INTERVAL = 15.0  # seconds between liveness checks of an idle listening connection
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
_BUFFER = 4096  # events kept from notifications


def notify_payload(schema: str | None, events: Sequence[RevocationEvent]) -> str:
    """The ``NOTIFY`` payload for ``events`` (one transaction's, in ``seq`` order)."""
    body: dict[str, object] = {"s": schema or "", "n": events[-1].seq}
    rows = [[e.seq, e.kind.value, e.value, e.until, e.at] for e in events]
    full = orjson.dumps({**body, "e": rows})
    return (full if len(full) <= MAX_PAYLOAD else orjson.dumps(body)).decode()


class PgListener:
    """Wakes waiters on ``NOTIFY``; reconnects with backoff after any connection error."""

    def __init__(self, conninfo: str, *, schema: str | None = None, connect_timeout: int = 2):
        self._conninfo = conninfo
        self._schema = schema or ""
        self._connect_timeout = connect_timeout
        self.wakeup = asyncio.Event()
        self.ready = False
        #: while listening: the highest ``seq`` known committed — the counter read just after
        #: ``LISTEN``, then every notification for this schema — so a waiter whose cursor is
        #: at or past it has nothing to read
        self.latest = 0
        self._hints = 0  # notifications whose payload could not be read
        self._events: dict[int, RevocationEvent] = {}  # seq -> event, from notifications
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

    def buffered(self, cursor: int, now: float, limit: int) -> tuple[list[RevocationEvent], int]:
        """Events ``cursor+1, cursor+2, ...`` as far as the buffer holds them without a gap
        (those with ``until > now``, at most ``limit``), and the last ``seq`` of that run
        (``cursor`` when the buffer does not hold ``cursor + 1``)."""
        out: list[RevocationEvent] = []
        seq = cursor
        events = self._events
        while len(out) < limit:
            event = events.get(seq + 1)
            if event is None:
                break
            seq += 1
            if event.until > now:
                out.append(event)
        return out, seq

    async def wait(
        self,
        cursor: int,
        fetch: Callable[[int], Awaitable[list[RevocationEvent]]],
        *,
        now: Callable[[], float],
        timeout: float,
        poll_interval: float,
        recheck: float = 1.0,
        limit: int = 1000,
    ) -> list[RevocationEvent]:
        """Events after ``cursor``: from the buffer when it has them, else ``fetch(cursor)``;
        until something arrives or ``timeout`` passes. Between reads wait for a notification
        (re-reading every ``recheck`` s anyway), or poll every ``poll_interval`` s while not
        listening."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        must_read = False
        while True:
            wakeup, listening, hints = self.wakeup, self.ready, self._hints  # before any read
            found, last = self.buffered(cursor, now(), limit)
            if found:
                return found
            cursor = last  # a run of expired events is skipped like the table query does
            if must_read or not listening or self.latest > cursor:
                found = await fetch(cursor)
                if found:
                    return found
            left = deadline - loop.time()
            if left <= 0:
                return []
            step = min(left, recheck if listening else poll_interval)
            try:
                async with asyncio.timeout(step):
                    await wakeup.wait()
                must_read = hints != self._hints  # an unreadable hint; else latest says
            except TimeoutError:
                must_read = step >= recheck  # a safety net: re-read every ``recheck`` s

    def _on_notify(self, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            if data["s"] != self._schema:
                return  # another store sharing the database
            latest = int(data["n"])
            events = [
                RevocationEvent(int(seq), RevocationKind(kind), str(value), float(u), float(at))
                for seq, kind, value, u, at in data.get("e") or ()
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self._hints += 1  # e.g. an older version's payload: read the table
            self._fire()
            return
        for event in events:
            self._events[event.seq] = event
        while len(self._events) > _BUFFER:
            del self._events[next(iter(self._events))]  # insertion order = seq order
        self.latest = max(self.latest, latest)
        self._fire()

    def _fire(self) -> None:
        wakeup, self.wakeup = self.wakeup, asyncio.Event()
        wakeup.set()

    async def _run(self) -> None:
        import psycopg
        from psycopg import sql

        names = (self._schema, "counters") if self._schema else ("counters",)
        counter = sql.SQL("SELECT value FROM {} WHERE name = %s").format(sql.Identifier(*names))
        backoff = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
                )
                try:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    # every commit from now on is notified; the counter covers those before
                    async with asyncio.timeout(self._connect_timeout):
                        cur = await conn.execute(counter, (REVOCATION_COUNTER,))
                        row = await cur.fetchone()
                    self.latest = int(row[0]) if row is not None else 0
                    self.ready = True
                    backoff = 0.05
                    self._fire()  # waiters re-read once now that nothing can be missed
                    while True:
                        async for note in conn.notifies(timeout=_HEALTH_INTERVAL):
                            self._on_notify(note.payload)
                        async with asyncio.timeout(self._connect_timeout):
                            await conn.execute("SELECT 1")
                finally:
                    self.ready = False
                    self.latest = 0
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: poll, then reconnect
                self._events.clear()  # notifications may be missed until LISTEN again
                self._fire()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

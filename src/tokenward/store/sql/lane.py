"""SQLite's hot path: one ``sqlite3`` connection owned by one dedicated thread.

``aiosqlite`` under SQLAlchemy hops to its connection thread and back for every driver call
(``BEGIN``, each ``execute``, each fetch, ``COMMIT``, the pool's reset on check-in), and
SQLAlchemy compiles and processes every statement on the way. A :class:`Lane` instead runs a
whole unit of work — a lookup, or a rotation's ``BEGIN IMMEDIATE`` … ``COMMIT`` — as one
plain function in its thread: one hop there and back per call, statements prepared once
(``sqlite3``'s statement cache), rows as tuples.

``synchronous`` is per connection (https://sqlite.org/pragma.html#pragma_synchronous): the
store's rotation lane runs at ``NORMAL`` and switches to ``FULL`` for a transaction that
revokes (see ``docs/stores.md``, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...errors import AlreadyExists, StoreUnavailable

__all__ = ["NOT_RUN", "Lane", "NotRun"]


class NotRun:
    """What :meth:`Lane.attempt` answers when it could not run the function at once."""

    __slots__ = ()


NOT_RUN = NotRun()

T = TypeVar("T")


class Lane:
    """One connection to the SQLite file ``path``, used only by this lane's thread.

    :meth:`run` calls ``fn(connection, *args)`` there, bounded by ``timeout`` (the store's:
    past it the caller gets ``StoreUnavailable``; SQLite's ``busy_timeout`` is the same, so a
    locked database fails the call inside the thread too). ``synchronous`` is the
    connection's level (``NORMAL`` or ``FULL``)."""

    def __init__(self, path: str, *, timeout: float, synchronous: str, name: str) -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        # called with each statement before it runs, when set (fault-injection tests, the
        # statement counts of bench/refresh_inproc.py); may raise to fail the call there
        self.on_statement: Callable[[str], None] | None = None
        # :meth:`read` on the calling thread first (``False``: always the lane's thread)
        self.inline = True
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,  # we say BEGIN and COMMIT ourselves
                check_same_thread=True,
                cached_statements=64,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._conn = conn
        return conn

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        hook = self.on_statement
        try:
            return fn(conn if hook is None else _Observed(conn, hook), *args)
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # the connection is broken: start afresh next time
                    self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _inline_connection(self) -> sqlite3.Connection:
        conn = self._inline
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=0,  # never wait on the event loop: busy → the thread path
                isolation_level=None,
                check_same_thread=False,  # used under _inline_lock, by whichever loop
                cached_statements=64,
            )
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA query_only = 1")  # reads only (see attempt)
            self._inline = conn
        return conn

    def _close_inline(self) -> None:
        conn, self._inline = self._inline, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()  # rolls back an open transaction

    def attempt(self, fn: Callable[..., T], *args: Any) -> T | NotRun:
        """A read-only ``fn`` run right here on the event loop when it can be at once, on
        this lane's second connection (read-only, ``busy_timeout = 0``: it never waits);
        :data:`NOT_RUN` when it could not (the connection in use by another thread, the
        database busy, an error). A primary-key lookup takes tens of microseconds from the
        page cache, less than the hop to a thread and back.

        Writes stay on the lane's thread: rotations run on the event loop (tried, with
        ``busy_timeout = 0``) made the other connections' readers stall for about a second
        under load (SQLite's WAL read retries against a writer committing without pause),
        and such stalls end in ``StoreUnavailable``."""
        if not self.inline or not self._inline_lock.acquire(blocking=False):
            return NOT_RUN
        try:
            hook = self.on_statement
            try:
                conn = self._inline_connection()
                result = fn(conn if hook is None else _Observed(conn, hook), *args)
            except sqlite3.Error:
                self._close_inline()
                return NOT_RUN
            except BaseException:
                self._close_inline()
                raise
            return result
        finally:
            self._inline_lock.release()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read-only ``fn``: :meth:`attempt` first, else on the lane's thread (:meth:`run`:
        bounded by the timeout, errors mapped)."""
        found = self.attempt(fn, *args)
        if isinstance(found, NotRun):
            return await self.run(fn, *args)
        return found

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._executor, self._call, fn, args)
        except sqlite3.IntegrityError:
            raise AlreadyExists("sqlite store: the record exists") from None
        except TimeoutError:
            raise StoreUnavailable(
                f"sqlite store at {self.path} unavailable (timed out, limit {self.timeout}s)"
            ) from None
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise StoreUnavailable(
                f"sqlite store at {self.path} unavailable ({reason}, limit {self.timeout}s)"
            ) from None

    def close(self) -> None:
        """Close the connections and stop the thread (waits for a running call)."""
        self._executor.submit(self._drop)
        self._executor.shutdown(wait=True)
        with self._inline_lock:
            self._close_inline()


class _Observed:
    """A connection whose ``execute`` tells ``hook`` first (only while a hook is set)."""

    def __init__(self, conn: sqlite3.Connection, hook: Callable[[str], None]) -> None:
        self._conn, self._hook = conn, hook
        self.raw = conn  # for connection settings, which the hook does not see

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._hook(sql)
        return self._conn.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

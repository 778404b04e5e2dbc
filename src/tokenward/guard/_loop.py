"""One daemon thread running an asyncio event loop: the guard's background work.

The JWKS refresher and the revocation-mirror follower run as tasks on this loop, so the guard
behaves the same in threaded (WSGI) and async (ASGI) applications: neither the request threads
nor the application's own event loop ever wait for them. :meth:`BackgroundLoop.stop` cancels
the tasks and joins the thread (clean shutdown, no half-read sockets left behind).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import ConfigurationError

__all__ = ["BackgroundLoop"]

T = TypeVar("T")


class BackgroundLoop:
    """Start with :meth:`start`, submit coroutines with :meth:`submit`, end with :meth:`stop`."""

    def __init__(self, name: str = "tokenward-guard") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ConfigurationError("the guard's background loop is not running")
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._ready.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the background loop (thread-safe)."""
        loop = self._loop
        if loop is None or not self.running:
            coro.close()
            raise ConfigurationError("the guard's background loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, close the loop and join the thread. Idempotent."""
        with self._lock:
            thread, loop = self._thread, self._loop
            self._thread = None
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)

"""A tiny loopback TCP fault proxy for fail-closed tests.

``FaultProxy(target_port)`` listens on ``127.0.0.1:<port>`` and forwards every connection to
``127.0.0.1:<target_port>``. It runs its own event loop in a daemon thread, so a test's loop (or
a blocking driver) can never stall it, and its controls are plain synchronous calls:

* :meth:`pause` — stop forwarding in both directions; connections (old and new) are accepted
  and held open, bytes stay queued: the peer sees a silent network, i.e. a timeout;
* :meth:`cut` — close every connection (queued bytes are dropped) and stop listening, so new
  connections are refused;
* :meth:`restore` — listen again on the same port and forward normally.

Usage::

    with FaultProxy(6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/15"
        proxy.pause(); ...; proxy.cut(); ...; proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Self

__all__ = ["FaultProxy"]

_CHUNK = 65536


class FaultProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections_total = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self._close_all(stop_listening=True))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------
    def pause(self) -> None:
        """Stop forwarding; hold connections open (the peer sees a silent network)."""
        self._run(self._set_flowing(False))

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self._run(self._close_all(stop_listening=True))

    def restore(self) -> None:
        """Listen again (same port) and forward normally."""
        self._run(self._restore())

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    # -- internals --------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        if self.port == 0:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _restore(self) -> None:
        await self._listen()
        await self._set_flowing(True)

    async def _close_all(self, *, stop_listening: bool) -> None:
        if stop_listening and self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(OSError, RuntimeError):
                # abort: RST, drop queued bytes (a cut cable, not a polite goodbye)
                transport.abort()
        self._writers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        self._writers.add(writer)
        me = asyncio.current_task()
        assert self._flowing is not None and me is not None
        self._tasks.add(me)  # type: ignore[arg-type]
        try:
            await self._flowing.wait()  # a paused proxy accepts but does not even dial
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            self._writers.discard(writer)
            self._tasks.discard(me)  # type: ignore[arg-type]
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.difference_update([*tasks, me])
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # bytes read before a pause are held, not sent
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()

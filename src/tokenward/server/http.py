"""uvicorn's HTTP protocol with a request-header read timeout (uvicorn has none of its own).

A client that opens a connection, or starts a new request on a kept-alive one, must finish
sending the request line and headers within ``header_timeout`` seconds, or the connection is
closed: a slowloris client dripping a header byte at a time cannot hold a connection (and a
slot of the connection cap) indefinitely. Idle kept-alive connections are closed by uvicorn's
``timeout_keep_alive``; the connection cap is uvicorn's ``limit_concurrency`` (503 beyond).

A request's start time is noted when it begins and cleared when its headers are parsed; one
sweeper per server closes the overdue connections (no timer per request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["protocol_class", "serve_options"]

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is optional for uvicorn
    _Base = H11Protocol  # type: ignore[assignment,misc]


class _HeaderTimeout:
    """Mixin over a uvicorn protocol (``cycle`` is the current request, ``None`` before the
    first; a new request whose headers have been parsed is a new ``cycle``).

    ``_tw_since`` is the loop time a request began while its headers are not complete yet
    (``None`` otherwise); one sweeper per server (every ``header_timeout / 4`` s, at most 1 s)
    closes the connections whose headers are overdue. No timer is armed per request."""

    header_timeout: float = 10.0
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    server_state: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._tw_cycle = self.cycle
        self._tw_since: float | None = self.loop.time()
        state = self.server_state
        if getattr(state, "_tw_sweeper", None) is None:
            state._tw_sweeper = self.loop.call_later(self._tw_interval(), self._tw_sweep, state)

    def _tw_interval(self) -> float:
        return min(1.0, self.header_timeout / 4)

    def _tw_sweep(self, state: Any) -> None:
        deadline = self.loop.time() - self.header_timeout
        for conn in list(state.connections):
            since = getattr(conn, "_tw_since", None)
            if since is not None and since < deadline and not conn.transport.is_closing():
                conn._tw_since = None
                conn.transport.close()
        state._tw_sweeper = self.loop.call_later(self._tw_interval(), self._tw_sweep, state)

    def data_received(self, data: bytes) -> None:
        if self._tw_since is None:
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                self._tw_since = self.loop.time()  # a new request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if self._tw_since is not None and self.cycle is not self._tw_cycle:
            self._tw_since = None  # its headers are in: a new request cycle
            self._tw_cycle = self.cycle


class HeaderTimeoutProtocol(_HeaderTimeout, _Base):  # type: ignore[misc]
    """The protocol ``tokenward serve`` runs (httptools when installed, else h11)."""


def protocol_class(header_timeout: float) -> type[asyncio.Protocol]:
    """Set the header timeout (per process: each ``--workers`` process calls this from its
    settings) and return the protocol class for ``uvicorn.run(http=...)``."""
    HeaderTimeoutProtocol.header_timeout = header_timeout
    return HeaderTimeoutProtocol


def serve_options(settings: Any) -> dict[str, Any]:
    """The uvicorn options for the slow-client limits and proxy handling."""
    return {
        "http": protocol_class(settings.header_timeout),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        "proxy_headers": False,  # X-Forwarded-For only from TOKENWARD_TRUSTED_PROXIES
    }

"""A pure-ASGI dispatch of the per-request hot paths (``GET /userinfo``, ``POST /introspect``,
``GET /healthz``): an exact ``(method, path)`` lookup that calls the route's own handler, without
FastAPI's middleware stack (error, telemetry and body-limit layers), route scan, dependency
solver and exception middleware. :class:`FastPathAPI` (the app ``create_app`` returns) sends
those requests to its ``fast_path`` — :class:`tokenward.server.middleware.RequestMiddleware`
around :class:`FastPath` — and every other request to FastAPI as usual (also a hot path
under a root path, the app's or the server's). FastAPI's native OpenTelemetry does not see
the dispatched requests (tokenward's own metrics and access log do).

The FastAPI routes stay registered — they are what the OpenAPI document describes, and they
answer every other method on those paths (405) — and both ways run the same handler code:
:func:`tokenward.server.routes.userinfo.answer`,
:func:`tokenward.server.routes.introspect.introspect`, the ``/healthz`` check. Errors take the
one error contract (:func:`tokenward.server.errors.handle_tokenward_error`); anything
unexpected propagates to the request middleware's catch-all (500 ``server_error``), as from a
route. The request id, the
header and body caps, the latency histogram and the access log are the same for both ways
(``route`` label: the path).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import TokenwardError
from .errors import handle_tokenward_error

__all__ = ["FastPath", "FastPathAPI", "Handler"]

#: What a hot path does with a request: the response (raise a ``TokenwardError`` for an error).
Handler = Callable[[Request], Awaitable[Response]]


class _Template:
    """``scope["route"]`` for a dispatched request: what the metrics and the log read."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class FastPath:
    """ASGI middleware: ``handlers[(method, path)]`` answers, everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, *, handlers: Mapping[tuple[str, str], Handler]) -> None:
        self.app = app
        self.handlers = dict(handlers)
        self._templates = {key: _Template(key[1]) for key in self.handlers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key: Any = (scope.get("method"), scope.get("path"))
        handler = self.handlers.get(key) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._templates[key]
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except TokenwardError as exc:
            response = await handle_tokenward_error(request, exc)
        await response(scope, receive, send)


class FastPathAPI(FastAPI):
    """FastAPI, with the hot paths (``fast_path.handlers``) answered by ``fast_path``."""

    fast_path: ASGIApp | None = None
    fast_keys: frozenset[tuple[str, str]] = frozenset()

    def use_fast_path(self, app: ASGIApp, keys: frozenset[tuple[str, str]]) -> None:
        self.fast_path, self.fast_keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if (
            fast is not None
            and scope["type"] == "http"
            and not self.root_path
            and not scope.get("root_path")
            and (scope.get("method"), scope.get("path")) in self.fast_keys
        ):
            scope["app"] = self
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

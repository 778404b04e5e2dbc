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
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InvalidRequest, TokenwardError
from .deps import FORM_CONTENT_TYPE, form_from_pairs, get_runtime
from .errors import handle_tokenward_error

__all__ = ["FastPath", "FastPathAPI", "Handler", "NoStoreJSON", "read_form_fast"]

_JSON_NO_STORE = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
)
_MAX_FIELDS = 64  # as tokenward.server.deps.read_form


class NoStoreJSON(Response):
    """``200`` (or ``status_code``) JSON with ``Cache-Control: no-store`` and ``Pragma:
    no-cache`` — the same status, body and headers as
    ``tokenward.server.errors.JSON(content, headers=NO_STORE)`` — rendered with orjson onto
    pre-encoded header lines (no header object is built per response)."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200) -> None:
        self.body = orjson.dumps(content)
        self.status_code = status_code
        self.background = None
        # a fresh list: FastAPI adds the headers its dependencies set to a route's answer
        self.raw_headers = [(b"content-length", str(len(self.body)).encode()), *_JSON_NO_STORE]


async def read_form_fast(request: Request) -> dict[str, str]:
    """:func:`tokenward.server.deps.read_form` for the hot paths, with the same answers (the
    same content type rule, body cap, UTF-8 check, ``parse_qsl`` semantics, field limit, text
    check, repeated-parameter refusal and ``resource`` list), reading the ASGI messages
    directly; a body without ``%`` or ``+`` (nothing to decode) is split without
    ``parse_qsl``."""
    ctype = ""
    for k, v in request.scope["headers"]:
        if k == b"content-type":
            ctype = v.decode("latin-1")
            break
    if ctype.split(";", 1)[0].strip().lower() != FORM_CONTENT_TYPE:
        raise InvalidRequest(f"the body must be {FORM_CONTENT_TYPE}")
    limit = get_runtime(request).settings.max_body_bytes
    receive = request.receive
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body += message.get("body", b"")
            if len(body) > limit:
                raise InvalidRequest("request body too large")
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8") from None
    if text.count("&") + 1 > _MAX_FIELDS:  # parse_qsl's max_num_fields rule
        raise InvalidRequest("too many parameters")
    pairs: list[tuple[str, str]]
    if "%" in text or "+" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
    else:  # nothing to unquote: parse_qsl's split (empty fields skipped, "a" is "a=")
        pairs = []
        for field in text.split("&"):
            if field:
                name, _, value = field.partition("=")
                pairs.append((name, value))
    return form_from_pairs(request, pairs)


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

"""One pure-ASGI middleware around every request (SSE-safe, unlike ``BaseHTTPMiddleware``):

* a request id (``X-Request-ID``: the caller's when it is sane, else a new one) bound into
  the structlog context and echoed on the response;
* caps before any route runs: total header bytes (431), a declared ``Content-Length``
  (413) and a NUL in the decoded path (400; no identifier has one and PostgreSQL refuses
  them), all as OAuth JSON errors;
* the body cap whatever the framing: ``receive`` is wrapped and counts the bytes as they
  arrive, so a ``Transfer-Encoding: chunked`` body (no ``Content-Length``) is cut off at
  the limit too: 413 when no response has started, and the route never sees the rest;
* the latency histogram by route template and a JSON access log line (``TOKENWARD_ACCESS_LOG``;
  off: no line is built at all); the histogram's label children are kept per
  ``(method, route, status)``, so a request costs one ``observe``;
* the catch-all: an unexpected exception is logged (with its traceback, server-side only)
  and answered ``500 {"error": "server_error"}`` — never a traceback to the caller;
* an optional :class:`ResponseGate`: work that must be done before a response starts (the
  Shared Signals transmitter stores the request's security events); when it fails, a 2xx
  becomes ``503 temporarily_unavailable`` — one hook in the send wrapper that exists anyway,
  no extra middleware layer on every request.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import time
import traceback
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import NO_STORE
from .logs import log_access

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["RequestMiddleware", "ResponseGate"]

_errors = structlog.get_logger("tokenward.server")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# the metric's ``method`` label: any other token a client sends is "other", so made-up methods
# cannot grow the label set (and the process's memory) without bound
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ids = random.Random(secrets.randbits(128))  # noqa: S311 - a correlation id, not a secret
# a forked worker draws its own sequence, not its parent's
os.register_at_fork(after_in_child=lambda: _ids.seed(secrets.randbits(128)))


def _new_request_id() -> str:
    """16 hex digits: a correlation id (not a secret), from a generator seeded from the OS
    once per process (no system call per request, unlike ``secrets.token_hex``)."""
    return f"{_ids.getrandbits(64):016x}"


_GATE_REFUSED = "the change was made but its security events could not be stored; retry"


class BodyTooLarge(Exception):
    """Raised by the wrapped ``receive`` once the body passes the cap (the 413 is sent first)."""


def _json_error(status: int, error: str, description: str) -> list[Message]:
    body = orjson.dumps({"error": error, "error_description": description})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ] + [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class ResponseGate(Protocol):
    """``open()`` when a request starts (its state); before its response starts, when
    ``waiting(state)``, ``before_start(state, status)`` (``False``: answer 503 instead of
    this 2xx); ``close(state)`` at the end, whatever happened. ``open``, ``waiting`` and
    ``close`` are synchronous: a request with nothing to do pays no extra await."""

    def open(self) -> Any: ...

    def waiting(self, state: Any) -> bool: ...

    async def before_start(self, state: Any, status: int) -> bool: ...

    def close(self, state: Any) -> None: ...


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None = None,
        max_header_bytes: int = 16384,
        max_body_bytes: int = 65536,
        access_log: bool = True,
        gate: ResponseGate | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # bounded: methods fold into _METHODS + "other", routes are templates, statuses few
        self._latency: dict[tuple[str, str, int], Any] = {}
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = scope.get("headers", [])
        rid = ""
        size = 0
        length: int | None = None
        for k, v in headers:
            size += len(k) + len(v) + 4
            if k == b"x-request-id":
                cand = v.decode("latin-1")
                rid = cand if _REQUEST_ID.match(cand) else ""
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1
        rid = rid or _new_request_id()
        rid_header = (b"x-request-id", rid.encode())
        status = 500
        gate = self.gate
        gated = gate.open() if gate is not None else None
        refused = False
        started = False
        received = 0
        too_large = False
        max_body = self.max_body_bytes

        # one wrapper each way (no chain of wrappers): the status and the request id on the
        # way out, nothing once a 413 went out; the body cap on the way in
        async def guarded_send(message: Message) -> None:
            nonlocal started, status, refused
            # the 413 (or the gate's 503) went out; whatever the app answers after it is dropped
            if too_large or refused:
                return
            if message["type"] == "http.response.start":
                started = True
                if (
                    gate is not None
                    and gate.waiting(gated)
                    and not await gate.before_start(gated, message["status"])
                ):
                    refused = True
                    status = 503
                    answer = _json_error(503, "temporarily_unavailable", _GATE_REFUSED)
                    answer[0]["headers"] += [(b"retry-after", b"1"), rid_header]
                    for m in answer:
                        await send(m)
                    return
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        async def capped_receive() -> Message:
            nonlocal received, too_large, status
            if too_large:  # the app reads on after the cut: no more of the body, ever
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    if not started:
                        for m in _json_error(413, "invalid_request", "request body too large"):
                            await guarded_send(m)
                    too_large = True
                    status = 413
                    raise BodyTooLarge
            return message

        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            if size > self.max_header_bytes:
                for m in _json_error(431, "invalid_request", "request headers too large"):
                    await guarded_send(m)
                status = 431
            elif length is not None and (length < 0 or length > self.max_body_bytes):
                for m in _json_error(413, "invalid_request", "request body too large"):
                    await guarded_send(m)
                status = 413
            elif "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
                # no id or parameter has one; PostgreSQL refuses NUL
                for m in _json_error(400, "invalid_request", "NUL in the request path or query"):
                    await guarded_send(m)
                status = 400
            else:
                await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge:
            status = 413
        except Exception as exc:
            if too_large:  # the app wrapped BodyTooLarge (e.g. as a body-parsing error)
                status = 413
                return
            # the traceback as plain text, never through the renderer's exception formatter:
            # structlog's default (an application that configures nothing) prints every
            # frame's locals, i.e. the request headers, the form's password, tokens
            _errors.error(
                "unhandled_error",
                path=scope.get("path"),
                error=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc)),
            )
            if not started:
                for m in _json_error(500, "server_error", "internal error"):
                    await guarded_send(m)
            status = 500
        finally:
            if gate is not None:
                gate.close(gated)
            self._record(scope, rid, status, time.perf_counter() - start)
            structlog.contextvars.unbind_contextvars("request_id")

    def _record(self, scope: Scope, rid: str, status: int, elapsed: float) -> None:
        try:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if self.metrics is not None:
                method = scope.get("method", "")
                method = method if method in _METHODS else "other"
                key = (method, template, status)
                child = self._latency.get(key)
                if child is None:
                    child = self._latency[key] = self.metrics.request_latency.labels(
                        method=method, route=template, status=str(status)
                    )
                child.observe(elapsed)
            if not self.access_log:
                return
            log_access(
                request_id=rid,
                method=scope.get("method"),
                route=template,
                status=status,
                ms=round(elapsed * 1000, 2),
                client=(scope.get("client") or ("", 0))[0],
            )
        except Exception:  # noqa: S110 - logging must never break a response
            pass

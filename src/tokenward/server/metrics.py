"""Prometheus metrics (one registry per app) and the ``/healthz`` and ``/metrics`` routes.

Lifecycle counters are fed by the security events of :mod:`tokenward.events` (issued,
refreshed, grace replays, reuse detected, revocations by kind), so the library's own counts
and the server's agree; the routes add login failures/throttles, verify failures by reason
and the request latency histogram (by route template, never by raw path);
:func:`instrument_store` times every store operation.

With several worker processes (``tokenward serve --workers N``) prometheus-client's
multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``, set up by :func:`prepare_multiprocess`
before the workers start): every worker writes its samples to files there and a scrape of any
worker aggregates them all, so one scrape sees the whole server.

``/metrics`` is open unless ``TOKENWARD_METRICS_TOKEN`` is set; then it needs
``Authorization: Bearer <that token>`` (compared in constant time).
"""

from __future__ import annotations

import atexit
import functools
import hmac
import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..errors import BearerRequired, InvalidToken
from ..store.base import Store

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = [
    "HEALTH_MAX_AGE",
    "MULTIPROC_ENV",
    "Metrics",
    "fast_healthz",
    "healthz",
    "instrument_store",
    "prepare_multiprocess",
    "router",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess() -> str:
    """Before starting worker processes: a fresh directory for their samples, named in the
    environment they inherit (prometheus-client reads it when it is first imported there),
    removed when this process exits."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    path = tempfile.mkdtemp(prefix="tokenward-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


router = APIRouter(tags=["operations"])


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tokens_issued = Counter(
            "tokenward_tokens_issued", "Access tokens issued, by grant", ["grant"], registry=r
        )
        self.sessions_started = Counter(
            "tokenward_sessions_started", "Refresh-token families started", registry=r
        )
        self.refreshes = Counter("tokenward_refreshes", "Refresh-token rotations", registry=r)
        self.grace_replays = Counter(
            "tokenward_grace_replays", "Parent tokens replayed inside the grace window", registry=r
        )
        self.reuse_detected = Counter(
            "tokenward_refresh_reuse_detected", "Refresh-token reuse detections", registry=r
        )
        self.revocations = Counter(
            "tokenward_revocations", "Revocations, by kind", ["kind"], registry=r
        )
        self.verify_failures = Counter(
            "tokenward_verify_failures",
            "Bearer token rejections, by reason",
            ["reason"],
            registry=r,
        )
        self.login_failures = Counter(
            "tokenward_login_failures", "Failed password checks", registry=r
        )
        self.login_throttled = Counter(
            "tokenward_login_throttled", "Logins refused by the brute-force limit", registry=r
        )
        self.request_latency = Histogram(
            "tokenward_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.store_latency = Histogram(
            "tokenward_store_operation_seconds",
            "Store call latency, by operation (see instrument_store)",
            ["op"],
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        )

    def on_event(self, event: str, fields: Mapping[str, Any]) -> None:
        """A :func:`tokenward.events.add_listener` callback."""
        if event == "issued":
            self.sessions_started.inc()
        elif event == "refreshed":
            self.refreshes.inc()
        elif event == "grace_replay":
            self.grace_replays.inc()
        elif event == "refresh_token_reuse":
            self.reuse_detected.inc()
        elif event == "revoked":
            self.revocations.labels(kind=str(fields.get("kind", "unknown"))).inc()

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            # every worker's samples, aggregated from the shared directory
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


_UNTIMED = frozenset({"open", "close", "wait_revocations"})  # lifecycle, and blocking waits


def instrument_store(store: Store, histogram: Histogram) -> None:
    """Time every async operation of the :class:`~tokenward.store.base.Store` contract on
    this store object (``op`` label = method name), except ``open``/``close`` and the
    blocking ``wait_revocations``. A store already instrumented (shared by two apps in one
    process) is left as it is."""
    for name, _fn in inspect.getmembers(Store, inspect.iscoroutinefunction):
        if name.startswith("_") or name in _UNTIMED:
            continue
        bound = getattr(store, name)
        if getattr(bound, "_tokenward_timed", False):
            continue
        setattr(store, name, _timed(bound, histogram.labels(op=name)))


def _timed(fn: Callable[..., Awaitable[Any]], child: Any) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            child.observe(time.perf_counter() - start)

    timed._tokenward_timed = True  # type: ignore[attr-defined]
    return timed


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


#: ``/healthz`` vouches for the store with a ping at most this many seconds old
HEALTH_MAX_AGE = 1.0


@router.get("/healthz", summary="Liveness and store reachability")
async def healthz(request: Request) -> dict[str, str]:
    """``ok`` when the store answered a ping within the last ``HEALTH_MAX_AGE`` second (one
    ping at a time, shared by concurrent probes: a probe storm is not a store storm), else 503
    (a driver error we did not map is "unavailable" too; the ping is timed as ``op="ping"``)."""
    await _runtime(request).health.check(HEALTH_MAX_AGE)
    return {"status": "ok"}


_OK = b'{"status":"ok"}'


async def fast_healthz(request: Request) -> Response:
    """The pure-ASGI way to ``/healthz`` (:mod:`tokenward.server.fastpath`)."""
    await _runtime(request).health.check(HEALTH_MAX_AGE)
    return Response(_OK, media_type="application/json")


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer TOKENWARD_METRICS_TOKEN when set)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}},
        401: {"description": "TOKENWARD_METRICS_TOKEN is set and was not sent"},
    },
)
async def metrics(request: Request) -> Response:
    rt = _runtime(request)
    token = rt.settings.metrics_token
    if token is not None:
        request.state.auth_scheme = "Bearer"
        header = request.headers.get("authorization", "")
        if not header:
            request.state.bearer_missing = True
            raise BearerRequired()
        scheme, _, given = header.partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise InvalidToken("not the metrics token (TOKENWARD_METRICS_TOKEN)")
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)

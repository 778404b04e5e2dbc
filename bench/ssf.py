"""The Shared Signals transmitter: what it adds to a request, and what publishing costs.

* ``gate``: the request middleware (``RequestMiddleware``) around a trivial ASGI app, with the
  transmitter's event gate and without, same run, interleaved rounds; per request (median of
  the rounds) and the difference. This is what every request pays (``/userinfo``,
  ``/introspect``, a refresh), whether or not it emits an event.
* ``publish``: ``Transmitter.publish`` of one logout's event (``revoked`` of a session) on the
  default store (SQLite, a temporary file) with 0, 1 and 10 poll streams (a SET signed and
  queued, one committed write, per stream), beside signing one access token (ES256), same run.

Run: ``.venv/bin/python bench/ssf.py`` (about 10 s). Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from typing import Any

import structlog

import tokenward.server.middleware as middleware
from tokenward.clock import FrozenClock
from tokenward.issuer import Issuer
from tokenward.keys import KeyRing
from tokenward.server.middleware import RequestMiddleware
from tokenward.server.outbox import Outbox
from tokenward.server.ssf import SESSION_REVOKED
from tokenward.server.ssf_streams import POLL
from tokenward.server.ssf_transmitter import EventGate, Transmitter, install_listener
from tokenward.store import store_from_url
from tokenward.store.base import Family, RefreshTokenRecord


class _Quiet:
    def info(self, *args: Any, **kw: Any) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: Any) -> None:
    pass


async def bench_gate(rounds: int, per_round: int) -> list[str]:
    middleware._access = _Quiet()  # type: ignore[assignment] # the access log is not measured
    structlog.configure(cache_logger_on_first_use=True)
    install_listener()
    plain = RequestMiddleware(_app)
    gated = RequestMiddleware(_app, gate=EventGate(None))  # type: ignore[arg-type]
    scope = {"type": "http", "path": "/userinfo", "method": "GET", "headers": []}
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        for app, out in ((plain, a), (gated, b)):
            t = time.perf_counter()
            for _ in range(per_round):
                await app(scope, _receive, _send)
            out.append((time.perf_counter() - t) / per_round)
    pa, pb = statistics.median(a), statistics.median(b)
    return [
        "### The event gate per request",
        "",
        "| | µs per request |",
        "|---|---|",
        f"| `RequestMiddleware` around a trivial app | {pa * 1e6:.2f} |",
        f"| the same with the transmitter's gate | {pb * 1e6:.2f} |",
        f"| difference | {(pb - pa) * 1e6:+.2f} |",
        "",
    ]


async def bench_publish(n: int) -> list[str]:
    clock = FrozenClock(1_800_000_000.0)
    ring = KeyRing.generate("ES256")
    issuer = Issuer(ring, issuer="https://auth.example", audience="api", clock=clock)
    t = time.perf_counter()
    for _ in range(n):
        issuer.issue(sub="alice", client_id="app", scope="read", sid="s1")
    sign = (time.perf_counter() - t) / n
    rows = [
        "### Publishing one logout's SETs",
        "",
        "| streams | µs per published event | × one access-token signature |",
        "|---|---|---|",
    ]
    for streams in (0, 1, 10):
        tmp = tempfile.mkdtemp(prefix="tokenward-bench-ssf-")
        store = store_from_url(f"sqlite:///{tmp}/bench.db")
        await store.open()
        now = clock.now()
        family = Family("s1", "alice", "app", "read", now, now, now + 1e6, now + 1e6, b"h" * 32)
        await store.create_family(family, RefreshTokenRecord(b"h" * 32, "s1", now))
        outbox = Outbox(store, clock=clock, allow_private=True)
        tx = Transmitter(
            store,
            clock=clock,
            outbox=outbox,
            issuer="https://auth.example",
            keyring=lambda: ring,
            allow_private=True,
        )
        for i in range(streams):
            body = {"delivery": {"method": POLL}, "events_requested": [SESSION_REVOKED]}
            await tx.streams.create(f"rcv{i}", body)
        event = ("revoked", {"kind": "sid", "value": "s1", "reason": "logout"})
        t = time.perf_counter()
        for i in range(n):
            await tx.publish([event])
            if i % 400 == 399:  # keep each queue below its bound
                for s in await tx.streams.all():
                    await tx.drop_queue(s.stream_id)
        per = (time.perf_counter() - t) / n
        rows.append(f"| {streams} | {per * 1e6:.1f} | {per / sign:.1f} |")
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rows += ["", f"One ES256 access-token signature: {sign * 1e6:.1f} µs.", ""]
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=5000)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    out = ["## Shared Signals transmitter (`bench/ssf.py`)", ""]
    out += await bench_gate(args.rounds, args.per_round)
    out += await bench_publish(args.events)
    print("\n".join(out))


if __name__ == "__main__":
    asyncio.run(main())

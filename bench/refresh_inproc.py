"""The rotating refresh grant driven in-process (no sockets): refreshes/s per store backend,
the store work of one refresh, and a same-run peer.

tokenward: ``POST /token grant_type=refresh_token`` through the whole ASGI app (client
authentication, lookup, credential watermark, risk engine, the authorization model re-check,
the atomic rotation with reuse detection, ES256 access token), with the console client as
``bench/http_bench.py`` uses it, on ``memory://``, ``sqlite://`` (a file, WAL) and ``redis://``
(a ``redis-server`` started on a free loopback port when none is given), ``--concurrency``
sessions refreshing concurrently on one event loop.

Peer (same run): flask-jwt-extended's stateless refresh (``@jwt_required(refresh=True)`` →
a new access token, ES256; it persists nothing and detects no reuse), driven through Flask's
test client in this process, sequentially (one gunicorn sync worker handles one request at a
time).

Per backend it also counts, over ``--count`` refreshes: store method calls (the ``Store``
contract), SQL statements and transactions (SQLAlchemy cursor events; the SQLite hot path's
own connection counts itself), Redis commands (``INFO commandstats`` before/after, so
pipelines and scripts are counted as Redis sees them), and with ``--profile`` prints the
top of a cProfile of those refreshes.

Run: ``.venv/bin/python bench/refresh_inproc.py`` (``--quick``; ``--only sqlite,redis``;
``--profile``; ``--compare`` adds SQLite through SQLAlchemy/aiosqlite, the path before the
dedicated connection threads). Prints Markdown. A "before" figure: run this file with
``PYTHONPATH`` pointing at an older checkout's ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import os
import pstats
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher

from tokenward.server import create_app
from tokenward.server.runtime import Runtime
from tokenward.server.settings import Settings

ISSUER = "https://auth.bench.test"
PASSWORD = "bench password 1"
CLIENT = "tokenward-console"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def tokenward_app(store_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(
        store_url=store_url,
        store_prefix=f"bench{time.monotonic_ns()}" if store_url.startswith("redis") else None,
        issuer=ISSUER,
        cookie_secure=True,
        log_json=True,
        key_encryption_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
    )
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    app = create_app(settings, password_hasher=hasher)
    rt: Runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await rt.users.create("bench", PASSWORD)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            yield http, rt


async def login(http: httpx.AsyncClient) -> str:
    r = await http.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "bench",
            "password": PASSWORD,
            "client_id": CLIENT,
        },
    )
    r.raise_for_status()
    token: str = r.json()["refresh_token"]
    return token


async def refresh(http: httpx.AsyncClient, token: str) -> str:
    r = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT},
    )
    if r.status_code != 200:
        raise RuntimeError(f"refresh failed: {r.status_code} {r.text}")
    new: str = r.json()["refresh_token"]
    return new


def _note(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(
    http: httpx.AsyncClient, tokens: list[str], seconds: float
) -> tuple[float, list[float]]:
    """Each session refreshes in a loop for ``seconds``; (refreshes/s, latencies in s)."""
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def one(i: int) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            tokens[i] = await refresh(http, tokens[i])
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(tokens))))
    return len(lat) / (time.perf_counter() - t0), lat


class StoreCounter:
    """Counts the Store contract's calls (wrapping the instance's coroutine methods)."""

    NAMES = (
        "get_refresh_token",
        "rotate",
        "get_user",
        "get_client",
        "get_role",
        "list_resources",
        "list_roles",
        "get_family",
        "get_or_create_secret",
        "rate_hit",
        "dpop_jti_seen",
        "get_record",
        "revocations_after",
    )

    def __init__(self, store: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.active = False
        for name in self.NAMES:
            fn = getattr(store, name, None)
            if fn is None:
                continue
            setattr(store, name, self._wrap(name, fn))

    def _wrap(self, name: str, fn: Any) -> Any:
        async def wrapped(*a: Any, **kw: Any) -> Any:
            if self.active:
                self.calls[name] += 1
            return await fn(*a, **kw)

        return wrapped


class Timer:
    """Time spent in chosen callables (sync or async), wrapped on their instances."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.active = False

    def wrap(self, owner: Any, name: str, label: str) -> None:
        if not hasattr(owner, "__dict__"):  # no instance attributes: wrap the class's
            owner = type(owner)
        fn = getattr(owner, name)
        if asyncio.iscoroutinefunction(fn):

            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*a, **kw)
                finally:
                    if self.active:
                        self.spent[label] += time.perf_counter() - t0

            setattr(owner, name, timed_async)
        else:

            def timed(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    if self.active:
                        self.spent[label] += time.perf_counter() - t0

            setattr(owner, name, timed)


def breakdown(rt: Runtime) -> Timer:
    """Where a refresh's time goes (sequential refreshes, so awaited time is this one's)."""
    t = Timer()
    t.wrap(rt.sessions.issuer, "issue", "access token (ES256 sign, claims)")
    t.wrap(rt.authorizer, "refresh", "authorization model re-check (incl. its reads)")
    if rt.risk is not None:
        t.wrap(rt.risk, "on_refresh", "risk engine (on_refresh)")
    for name in ("get_refresh_token", "get_user", "get_client", "rotate"):
        t.wrap(rt.store, name, f"store.{name}")
    t.wrap(rt.sessions, "refresh", "SessionManager.refresh (all of the grant's work)")
    return t


def sql_counter(store: Any) -> Counter[str] | None:
    """SQL statements and transactions: SQLAlchemy's cursor events, and the SQLite store's
    own refresh-path connections (their statement hook; one thread hop per call)."""
    engine = getattr(store, "_engine", None)
    if engine is None:
        return None
    from sqlalchemy import event

    counts: Counter[str] = Counter()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _stmt(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        counts["SQLAlchemy statements"] += 1
        counts[f"SQLAlchemy {statement.split(None, 1)[0].upper()}"] += 1

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        counts["SQLAlchemy commits"] += 1

    for attr in ("_rotate_lane", "_read_lane"):
        lane = getattr(store, attr, None)
        if lane is None:
            continue
        label = attr.strip("_").replace("_lane", " lane")

        def hook(sql: str, _label: str = label) -> None:
            counts[f"{_label} statements"] += 1
            counts[f"{_label} {sql.split(None, 1)[0].upper()}"] += 1

        lane.on_statement = hook
        run = lane.run

        async def counted(*a: Any, _run: Any = run, _label: str = label) -> Any:
            counts[f"{_label} calls (thread hops)"] += 1
            return await _run(*a)

        lane.run = counted
        read = lane.read

        async def counted_read(*a: Any, _read: Any = read, _label: str = label) -> Any:
            counts[f"{_label} reads (on the event loop unless busy: then a hop)"] += 1
            return await _read(*a)

        lane.read = counted_read
    return counts


def redis_round_trips(store: Any) -> Counter[str] | None:
    """Round trips as the client sends them: single commands (a script call is one) and
    pipelines (one each)."""
    client = getattr(store, "_redis", None)
    if client is None:
        return None
    from redis.asyncio.client import Pipeline

    counts: Counter[str] = Counter()
    send = client.execute_command

    async def command(*a: Any, **kw: Any) -> Any:
        counts[f"round trip: {str(a[0]).upper()}"] += 1
        return await send(*a, **kw)

    client.execute_command = command
    execute = Pipeline.execute

    async def pipeline(self: Any, *a: Any, **kw: Any) -> Any:
        if self.command_stack:
            counts["round trip: pipeline"] += 1
        return await execute(self, *a, **kw)

    Pipeline.execute = pipeline  # type: ignore[method-assign]
    return counts


async def redis_commands(store: Any) -> Counter[str] | None:
    client = getattr(store, "_redis", None) or getattr(store, "redis", None)
    if client is None:
        return None
    stats = await client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


async def measure_backend(
    name: str, url: str, args: argparse.Namespace, stack: contextlib.AsyncExitStack
) -> tuple[dict[str, Any], str]:
    """Open the app (kept open in ``stack`` for the interleaved rounds), count and time the
    work of ``--count`` sequential refreshes; the row to fill with rounds, and the details."""
    http, rt = await stack.enter_async_context(tokenward_app(url))
    if name.endswith("(SQLAlchemy/aiosqlite)"):
        rt.store.lanes = False  # type: ignore[attr-defined]
    counter = StoreCounter(rt.store)
    timer = breakdown(rt)
    sql = sql_counter(rt.store)
    trips = redis_round_trips(rt.store)
    tokens = [await login(http) for _ in range(args.concurrency)]
    # warm-up
    for i in range(len(tokens)):
        for _ in range(5):
            tokens[i] = await refresh(http, tokens[i])
    # the work of one refresh, sequentially
    before = await redis_commands(rt.store)
    for c in (sql, trips):
        if c is not None:
            c.clear()
    counter.active = timer.active = True
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    for _ in range(args.count):
        tokens[0] = await refresh(http, tokens[0])
    if prof is not None:
        prof.disable()
    seq_ms = (time.perf_counter() - t0) / args.count * 1000
    counter.active = timer.active = False
    after = await redis_commands(rt.store)
    lines = [f"### {name}: per refresh (mean of {args.count}, sequential: {seq_ms:.2f} ms)"]
    for k, v in sorted(timer.spent.items(), key=lambda kv: -kv[1]):
        lines.append(f"- {k}: {v / args.count * 1e6:,.0f} µs")
    for k, v in sorted(counter.calls.items()):
        lines.append(f"- store.{k}: {v / args.count:.2f}")
    for c in (sql, trips):
        if c is not None:
            for k, v in sorted(c.items()):
                lines.append(f"- {k}: {v / args.count:.2f}")
    if trips is not None:
        lines.append(f"- Redis round trips: {sum(trips.values()) / args.count:.2f}")
    if before is not None and after is not None:
        diff = after - before
        diff.pop("info", None)
        total = sum(diff.values())
        lines.append(f"- Redis commands executed (scripts' included): {total / args.count:.2f}")
        for k, v in sorted(diff.items()):
            lines.append(f"  - {k}: {v / args.count:.2f}")
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
        lines.append("```\n" + out.getvalue()[-9000:] + "\n```")

    async def one_round(seconds: float) -> tuple[float, list[float]]:
        return await drive(http, tokens, seconds)

    row: dict[str, Any] = {
        "name": name,
        "round": one_round,
        "rounds": [],
        "lat": [],
        "seq_ms": seq_ms,
    }
    return row, "\n".join(lines)


def flask_peer() -> dict[str, Any] | None:
    """flask-jwt-extended's stateless refresh, ES256, through Flask's test client: the row to
    fill with rounds (sequential: one gunicorn sync worker serves one request at a time)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from flask import Flask, jsonify
        from flask_jwt_extended import (
            JWTManager,
            create_access_token,
            create_refresh_token,
            get_jwt_identity,
            jwt_required,
        )
    except ImportError:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    app = Flask("peer")
    app.config["JWT_ALGORITHM"] = "ES256"
    app.config["JWT_PRIVATE_KEY"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    app.config["JWT_PUBLIC_KEY"] = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    JWTManager(app)

    @app.post("/refresh")
    @jwt_required(refresh=True)  # type: ignore[untyped-decorator]
    def _refresh() -> Any:
        return jsonify(access_token=create_access_token(identity=get_jwt_identity()))

    with app.app_context():
        token = create_refresh_token(identity="bench")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    for _ in range(50):
        t1 = time.perf_counter()
        assert client.post("/refresh", headers=headers).status_code == 200
        lat.append(time.perf_counter() - t1)

    def sync_round(seconds: float) -> tuple[float, list[float]]:
        out: list[float] = []
        t0 = time.perf_counter()
        stop = t0 + seconds
        while time.perf_counter() < stop:
            t1 = time.perf_counter()
            assert client.post("/refresh", headers=headers).status_code == 200
            out.append(time.perf_counter() - t1)
        return len(out) / (time.perf_counter() - t0), out

    async def one_round(seconds: float) -> tuple[float, list[float]]:
        # in a thread, as in its own server process: the event loop (tokenward's idle apps)
        # keeps running meanwhile
        return await asyncio.to_thread(sync_round, seconds)

    return {
        "name": "flask-jwt-extended (stateless, Flask test client)",
        "round": one_round,
        "rounds": [],
        "lat": [],
        "seq_ms": statistics.mean(lat) * 1000,
    }


async def main_async(args: argparse.Namespace) -> None:
    only = set(args.only.split(",")) if args.only else {"memory", "sqlite", "redis"}
    rows: list[dict[str, Any]] = []
    details: list[str] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, redis_server(args.redis_url) as redis_url:
        backends = [
            ("memory", "memory://"),
            ("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"),
        ]
        if args.compare:
            backends.append(
                ("sqlite (SQLAlchemy/aiosqlite)", f"sqlite:///{Path(tmp) / 'bench2.db'}")
            )
        if redis_url:
            backends.append(("redis", redis_url))
        async with contextlib.AsyncExitStack() as stack:
            for name, url in backends:
                if name.split()[0] not in only:
                    continue
                _note(f"{name}: counting")
                row, detail = await measure_backend(name, url, args, stack)
                rows.append(row)
                details.append(detail)
            peer = flask_peer()
            if peer is not None:
                rows.append(peer)
            # interleaved: every target's round r runs before any target's round r + 1
            _note("rounds")
            for _ in range(args.rounds):
                for row in rows:
                    _note(f"round: {row['name']}")
                    rate, lat = await row["round"](args.seconds)
                    row["rounds"].append(rate)
                    row["lat"].extend(lat)
        _note("closing")
    _note("closed")
    for row in rows:
        row["rate"] = statistics.median(row["rounds"])
        row["p50"] = _pct(row["lat"], 0.5) * 1000
        row["p99"] = _pct(row["lat"], 0.99) * 1000
    base = peer["rate"] if peer is not None else None
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {args.concurrency} "
        f"concurrent sessions (tokenward), {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s, median round shown\n"
    )
    print("| implementation | refreshes/s | vs peer | p50 ms | p99 ms | sequential ms | rounds |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = f"{r['rate'] / base:.2f}×" if base else "—"
        rounds = ", ".join(f"{x:.0f}" for x in r["rounds"])
        print(
            f"| {r['name']} | {r['rate']:,.0f} | {ratio} | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['seq_ms']:.2f} | {rounds} |"
        )
    print()
    print("\n\n".join(details))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--count", type=int, default=200, help="refreshes counted/profiled")
    p.add_argument("--only", default="", help="e.g. sqlite,redis")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also SQLite through SQLAlchemy/aiosqlite (the path before the dedicated threads)",
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.count = 1.0, 1, 50
    import logging

    import structlog

    logging.disable(logging.WARNING)  # no log I/O in the loop (access log, events)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

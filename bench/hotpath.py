"""The authorization server's per-request hot paths, in process (no sockets, no HTTP parser):
``GET /userinfo`` (bearer access token), ``POST /introspect`` (a confidential client with HTTP
Basic, an access token) and ``GET /healthz``, against the floor — a bare ASGI app answering a
small JSON body — in ONE run.

Method:

* the app is ``create_app`` with its defaults (SQLite store in a temporary directory, the
  system clock, ES256 keys, the risk engine on, the access log and the metrics on) and runs
  its real lifespan; the log goes to ``/dev/null`` at INFO (the access line is rendered);
* every request is a raw ASGI call (``scope``, ``receive``, ``send``) on one event loop, one
  after the other: what the app costs per request, not the server's parser or the kernel;
* each item is calibrated to ~``--target-ms`` per repeat and the repeats are interleaved
  round-robin (drift hits every item alike); the best repeat is reported as requests/s and
  µs/request (on a shared machine the minimum is the stable figure), with the ratio to the
  floor.

``python bench/hotpath.py`` prints the table and writes it into docs/benchmarks.md between the
``bench:hotpath`` markers (``--no-write`` to skip); ``--profile ROUTE`` prints a cProfile of
that route (``userinfo``, ``introspect``, ``healthz``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:hotpath:start -->", "<!-- bench:hotpath:end -->"

Call = Callable[[], Awaitable[int]]
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the log's sink for the whole run


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def asgi_call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Call:
    """A coroutine function doing one request; returns the status."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if body:
        raw.append((b"content-length", str(len(body)).encode()))

    async def call() -> int:
        scope = _scope(method, path, list(raw))
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return call


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: a bare ASGI endpoint (what any app on this server costs at least)."""
    if scope["type"] != "http":
        return
    body = orjson.dumps({"sub": "alice"})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(app: Any) -> Callable[[], Awaitable[None]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    done: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        await done.put(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    started = await done.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {started}")

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await done.get()
        await task

    return stop


async def _setup(tmp: str) -> tuple[Any, dict[str, Call], Callable[[], Awaitable[None]]]:
    from argon2 import PasswordHasher

    from tokenward.server import create_app
    from tokenward.server.logs import configure_logging
    from tokenward.server.settings import Settings

    real, sys.stderr = sys.stderr, DEVNULL
    try:
        configure_logging(json=True)  # rendered, written to /dev/null
    finally:
        sys.stderr = real
    settings = Settings(
        store_url=f"sqlite:///{tmp}/hot.db",
        issuer="http://127.0.0.1:8000",
        default_resource="api",
    )
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    app = create_app(settings, password_hasher=cheap)
    stop = await _lifespan(app)
    rt = app.state.runtime
    await rt.resources.add("api", name="API", scopes="read write", default_scopes="read")
    await rt.roles.add("member", "read write")
    await rt.users.create("alice", "correct horse battery", roles=["member"])
    await rt.clients.create(
        "app",
        public=True,
        grants=("password", "refresh_token"),
        scopes=("read", "openid", "profile"),
        resources=("api", settings.issuer),
    )
    _, secret = await rt.clients.create(
        "svc", grants=("client_credentials",), scopes=("read",), resources=("api",)
    )
    captured: list[bytes] = []

    async def grab(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                captured.append(message.get("body", b""))
            await send(message)

        await app(scope, receive, keep)

    token_call = asgi_call(
        grab,
        "POST",
        "/token",
        {"content-type": "application/x-www-form-urlencoded"},
        b"grant_type=password&username=alice&password=correct+horse+battery&client_id=app"
        b"&scope=openid+profile",
    )
    status = await token_call()
    if status != 200:
        raise RuntimeError(f"/token answered {status}: {b''.join(captured)!r}")
    access = orjson.loads(b"".join(captured))["access_token"]
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    calls = {
        "floor": asgi_call(floor_app, "GET", "/userinfo", {}),
        "userinfo": asgi_call(app, "GET", "/userinfo", {"authorization": f"Bearer {access}"}),
        "introspect": asgi_call(
            app,
            "POST",
            "/introspect",
            {
                "authorization": f"Basic {basic}",
                "content-type": "application/x-www-form-urlencoded",
            },
            b"token=" + access.encode(),
        ),
        "healthz": asgi_call(app, "GET", "/healthz", {}),
    }
    for name, call in calls.items():
        status = await call()
        if status != 200:
            raise RuntimeError(f"{name} answered {status}")
    app.state.bench_token = access
    app.state.bench_basic = basic
    return app, calls, stop


async def components(app: Any, target_ms: float, repeats: int) -> dict[str, float]:
    """What the parts of the hot paths cost alone (µs each, best repeat)."""
    from fastapi import FastAPI

    from tokenward.server.middleware import RequestMiddleware

    rt = app.state.runtime
    token = app.state.bench_token
    claims = rt.verifier.verify(token)

    async def user() -> int:
        await rt.store.get_user(claims.sub)
        return 0

    async def client() -> int:
        await rt.store.get_client(claims.client_id)
        return 0

    async def ping() -> int:
        await rt.store.ping()
        return 0

    async def verify_cached() -> int:
        rt.verifier.verify(token)
        return 0

    cache = getattr(rt.verifier, "_cache", None)

    async def verify_uncached() -> int:
        if cache is not None:
            cache.clear()
        rt.verifier.verify(token)
        return 0

    bare = FastAPI()

    @bare.get("/x")
    async def x() -> dict[str, str]:
        return {"sub": "alice"}

    wrapped = RequestMiddleware(bare, metrics=rt.metrics)
    calls = {
        "store.get_user": user,
        "store.get_client": client,
        "store.ping": ping,
        "verify (cache hit)": verify_cached,
        "verify ES256 (cache cleared)": verify_uncached,
        "FastAPI route, no middleware": asgi_call(bare, "GET", "/x", {}),
        "FastAPI route + RequestMiddleware": asgi_call(wrapped, "GET", "/x", {}),
    }
    return await measure(calls, target_ms, repeats)


#: the timer: wall-clock, or the process's CPU time (``--cpu``: on a machine shared with
#: other work, time spent waiting for a core is not counted)
TIMER = time.perf_counter


async def _time(call: Call, n: int) -> float:
    start = TIMER()
    for _ in range(n):
        await call()
    return TIMER() - start


async def measure(calls: dict[str, Call], target_ms: float, repeats: int) -> dict[str, float]:
    """Best µs/request of each call."""
    sizes: dict[str, int] = {}
    for name, call in calls.items():
        n = 16
        while (elapsed := await _time(call, n)) < target_ms / 4000:
            n *= 2
        sizes[name] = max(1, int(n * (target_ms / 1000) / elapsed))
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            elapsed = await _time(call, sizes[name])
            best[name] = min(best[name], elapsed / sizes[name] * 1e6)
    return best


def table(best: dict[str, float]) -> str:
    floor = best["floor"]
    labels = {
        "floor": "bare ASGI endpoint (the floor)",
        "userinfo": "`GET /userinfo` (bearer access token)",
        "introspect": "`POST /introspect` (Basic client, access token)",
        "healthz": "`GET /healthz`",
    }
    lines = [
        "| request (in process, one loop) | µs/request | requests/s | × floor |",
        "|---|---:|---:|---:|",
    ]
    for name in ("floor", "userinfo", "introspect", "healthz"):
        us = best[name]
        lines.append(f"| {labels[name]} | {us:.1f} | {1e6 / us:,.0f} | {us / floor:.1f} |")
    lines.append("")
    lines.append(
        f"Python {platform.python_version()}, {platform.machine()}, best of the repeats "
        + (
            "of the process's CPU time (`python bench/hotpath.py --cpu`)."
            if TIMER is time.process_time
            else "(`python bench/hotpath.py`)."
        )
    )
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc:
        return
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _app, calls, stop = await _setup(tmp)
        try:
            if args.profile:
                call = calls[args.profile]
                prof = cProfile.Profile()
                n = args.profile_n
                prof.enable()
                elapsed = await _time(call, n)
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.lines)
                print(f"{args.profile}: {elapsed / n * 1e6:.1f} µs/request under cProfile")
                print(out.getvalue())
                return
            if args.components:
                for name, us in (await components(_app, args.target_ms, args.repeats)).items():
                    print(f"{name:40} {us:9.1f} µs")
                return
            best = await measure(calls, args.target_ms, args.repeats)
        finally:
            await stop()
    text = table(best)
    print(text)
    if args.write:
        write_doc(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target-ms", type=float, default=300.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="a smoke run")
    p.add_argument("--no-write", dest="write", action="store_false")
    p.add_argument("--profile", choices=("userinfo", "introspect", "healthz", "floor"))
    p.add_argument("--components", action="store_true", help="time the parts alone")
    p.add_argument("--cpu", action="store_true", help="time with the process's CPU time")
    p.add_argument("--profile-n", type=int, default=2000)
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--lines", type=int, default=45)
    args = p.parse_args()
    if args.cpu:
        global TIMER
        TIMER = time.process_time
    if args.quick:
        args.target_ms, args.repeats, args.write = 30.0, 1, False
    try:
        import uvloop

        uvloop.install()  # the server's loop
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

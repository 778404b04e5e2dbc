"""HTTP refresh-grant throughput with 1 and 3 ``tokenward serve`` instances per backend.

For each backend (SQLite file, PostgreSQL schema, Redis prefix) and N in (1, 3): N
``tokenward serve`` processes on free loopback ports share one store; this process (the one load
generator) logs in ``--sessions`` sessions with the password grant, then drives the refresh
grant (``POST /token``, ``grant_type=refresh_token``, a public client) for ``--seconds``: every
session refreshes in a loop, each request going to the next instance round-robin, so a
session's consecutive rotations hit different instances. Reported: successful refreshes per
second, p50/p99 latency, failures (anything but 200), and the ratio to the 1-instance SQLite
row of the same run. Every configuration runs once per round (``--rounds``, interleaved, fresh
server processes each time, one store per backend throughout); the round with the median
throughput is reported, with every round's figure next to it.

Run: ``.venv/bin/python bench/instances.py`` (``--quick`` for a smoke run). Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent / "tokenward"
REDIS_URL = os.environ.get("TOKENWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POSTGRES_URL = os.environ.get(
    "TOKENWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PASSWORD = "bench password"


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    cleanup: Any


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env.update(
        TOKENWARD_KEY_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32))
        .decode()
        .rstrip("="),
        TOKENWARD_ISSUER="http://bench.tokenward.test",
        TOKENWARD_PASSWORD_MEMORY_COST="1024",  # logins are set-up here, not what is measured
        TOKENWARD_PASSWORD_TIME_COST="1",
        TOKENWARD_LOGIN_LIMIT_PER_IP="100000/minute",
    )
    return env


def _backends(tmp: Path, only: list[str]) -> Iterator[Backend]:
    tag = uuid.uuid4().hex[:10]
    if "sqlite" in only:
        env = _base_env() | {"TOKENWARD_STORE_URL": f"sqlite:///{tmp / f'{tag}.db'}"}
        yield Backend("sqlite", env, lambda: None)
    if "postgres" in only:
        schema = f"twinst_{tag}"
        env = _base_env() | {"TOKENWARD_STORE_URL": f"{POSTGRES_URL}?schema={schema}"}

        def drop(schema: str = schema) -> None:
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]

        yield Backend("postgres", env, drop)
    if "redis" in only:
        prefix = f"twinst{tag}"
        env = _base_env() | {"TOKENWARD_STORE_URL": REDIS_URL, "TOKENWARD_STORE_PREFIX": prefix}

        def delete(prefix: str = prefix) -> None:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

        yield Backend("redis", env, delete)


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [str(BIN), *args], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"tokenward {' '.join(args[:2])}: {done.stderr[-500:]}")


@contextlib.contextmanager
def servers(env: dict[str, str], n: int) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for _ in range(n):
            port = _free_port()
            bases.append(f"http://127.0.0.1:{port}")
            procs.append(
                subprocess.Popen(
                    [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        for base, proc in zip(bases, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"tokenward serve at {base} exited")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tokenward serve at {base} did not start")
                time.sleep(0.05)
        yield bases
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def drive(bases: list[str], sessions: int, seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=sessions, max_keepalive_connections=sessions)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        login = {"grant_type": "password", "username": "bench", "password": PASSWORD}
        tokens: list[str] = []
        for i in range(sessions):
            r = await http.post(f"{bases[i % len(bases)]}/token", data=login | {"client_id": "app"})
            r.raise_for_status()
            tokens.append(r.json()["refresh_token"])
        latencies: list[float] = []
        failures = 0
        turn = 0
        stop = time.monotonic() + seconds

        async def session(i: int) -> None:
            nonlocal failures, turn
            rt = tokens[i]
            while time.monotonic() < stop:
                base = bases[turn % len(bases)]
                turn += 1
                t0 = time.perf_counter()
                r = await http.post(
                    f"{base}/token",
                    data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "app"},
                )
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    rt = r.json()["refresh_token"]
                else:
                    failures += 1

        start = time.monotonic()
        await asyncio.gather(*(session(i) for i in range(sessions)))
        elapsed = time.monotonic() - start
    return {
        "rps": len(latencies) / elapsed,
        "n": len(latencies),
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="sqlite,postgres,redis")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.sessions, args.rounds = 2.0, 8, 1
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        chosen = list(_backends(Path(tmp), args.only.split(",")))
        for backend in chosen:
            stack.callback(backend.cleanup)
            _cli(backend.env, "user", "add", "bench", "--password-stdin", stdin=PASSWORD)
            _cli(backend.env, "client", "add", "app", "--public", "--grants",
                 "password,refresh_token")  # fmt: skip
        for _ in range(args.rounds):  # rounds, so that noise hits every row alike
            for backend in chosen:
                for n in (1, 3):
                    with servers(backend.env, n) as bases:
                        r = asyncio.run(drive(bases, args.sessions, args.seconds))
                    runs.setdefault((backend.name, n), []).append(r)
                    print(f"# {backend.name} x{n}: {r['rps']:.0f}/s", file=sys.stderr)
    load_after = os.getloadavg()[0]

    def median_run(key: tuple[str, int]) -> dict[str, Any]:
        return sorted(runs[key], key=lambda r: r["rps"])[len(runs[key]) // 2]

    ref = median_run(("sqlite", 1))["rps"] if ("sqlite", 1) in runs else None
    print(
        f"Refresh grant over HTTP: {args.sessions} concurrent sessions, {args.seconds:.0f} s per "
        f"row, requests round-robin over the instances, one load-generator process (httpx); "
        f"the round with the median throughput of {args.rounds} interleaved rounds. "
        f"{os.cpu_count()} CPUs shared by the servers, the load generator and the store; "
        f"load average {load_before:.1f} before, {load_after:.1f} after.\n"
    )
    print(
        "| backend | instances | refreshes/s | vs SQLite ×1 | p50 ms | p99 ms | failures "
        "| refreshes/s, every round |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for (name, n), rounds in runs.items():
        r = median_run((name, n))
        ratio = f"{r['rps'] / ref:.2f}×" if ref else "–"
        every = ", ".join(f"{x['rps']:,.0f}" for x in rounds)
        failures = sum(x["failures"] for x in rounds)
        print(
            f"| {name} | {n} | {r['rps']:,.0f} | {ratio} | {r['p50'] * 1000:.1f} | "
            f"{r['p99'] * 1000:.1f} | {failures} | {every} |"
        )


if __name__ == "__main__":
    main()

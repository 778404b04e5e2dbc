"""Revocation propagation across instances, and store-level rotate throughput, per backend.

Propagation: one *revoking* process appends ``--revocations`` events (``add_revocation``, paced
``--pace`` seconds apart) while ``--followers`` separate *follower* processes, each with its own
store connection, loop on ``wait_revocations`` from their cursor — Redis ``XREAD BLOCK``,
PostgreSQL ``LISTEN/NOTIFY`` (+ the table), SQLite polling (``poll_interval``). The latency of
one event at one follower is ``received - started``, where ``started`` is taken just before the
revoking call and ``received`` just after ``wait_revocations`` returned it; both on
``time.monotonic()``, which on Linux is one system-wide clock for every process. Reported:
p50/p99/max over every (event, follower) pair, side by side for the three backends.

Throughput: ``rotate`` (the atomic consume-and-rotate step alone, no JWT signing) with 1 and 3
client processes, each driving ``--tasks`` concurrent sessions of its own for ``--seconds``.

Run: ``.venv/bin/python bench/propagation.py`` (``--quick`` for a smoke run). Prints Markdown.
Needs Redis and PostgreSQL for their rows (skipped with a note when unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tokenward.errors import StoreUnavailable
from tokenward.store import Family, RefreshTokenRecord, RevocationKind, Store, store_from_url
from tokenward.store.base import RevocationEvent
from tokenward.store.sql import SQLStore
from tokenward.store.sql.listener import PgListener
from tokenward.store.sql.schema import event_from_row, revocations

REDIS_URL = os.environ.get("TOKENWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POSTGRES_URL = os.environ.get(
    "TOKENWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STOP = "__stop__"


class _RereadListener(PgListener):
    """The follow path before the NOTIFY payload carried events: every notification is only a
    hint, and each wake-up re-reads the table."""

    async def wait(
        self,
        cursor: int,
        fetch: Callable[[int], Awaitable[list[RevocationEvent]]],
        *,
        now: Callable[[], float],
        timeout: float,
        poll_interval: float,
        recheck: float = 1.0,
        limit: int = 1000,
    ) -> list[RevocationEvent]:
        """The previous ``PgListener.wait``, verbatim but for the signature."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wakeup, listening = self.wakeup, self.ready
            found = await fetch(cursor)
            if found:
                return found
            left = deadline - loop.time()
            if left <= 0:
                return []
            step = min(left, recheck if listening else poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), step)


class RereadSQLStore(SQLStore):
    """PostgreSQL as followed before: table re-read in a transaction on every ``NOTIFY``."""

    async def revocations_after(
        self, cursor: int, *, now: float, limit: int = 1000
    ) -> list[RevocationEvent]:
        query = (
            select(revocations)
            .where(revocations.c.seq > cursor, revocations.c.until > now)
            .order_by(revocations.c.seq)
            .limit(limit)
        )
        async with self._tx(write=False) as conn:  # BEGIN … COMMIT, as before
            rows = (await conn.execute(query)).all()
        return [event_from_row(r) for r in rows]

    async def wait_revocations(
        self, cursor: int, *, now: Callable[[], float], timeout: float
    ) -> list[RevocationEvent]:
        if self._listener is None:
            conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = _RereadListener(conninfo, schema=self.schema)
        return await super().wait_revocations(cursor, now=now, timeout=timeout)


@dataclass
class Backend:
    name: str
    mechanism: str
    url: str
    options: dict[str, Any]
    reread: bool = False  # PostgreSQL: the previous follow path (for a same-run comparison)

    def make(self) -> Store:
        if self.reread:
            return RereadSQLStore(self.url, **self.options)
        return store_from_url(self.url, **self.options)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- follower / worker processes ----------------------------------------------------------
def _follower(backend: Backend, ready: Any, out: Any) -> None:
    asyncio.run(_follow(backend, ready, out))


async def _follow(backend: Backend, ready: Any, out: Any) -> None:
    store = backend.make()
    await store.open()
    received: dict[str, float] = {}
    try:
        cursor = await store.revocation_cursor()
        # warm up the blocking path (connection, LISTEN) before the clock starts
        await store.wait_revocations(cursor, now=time.time, timeout=0.05)
        ready.set()
        while True:
            events = await store.wait_revocations(cursor, now=time.time, timeout=2.0)
            t = time.monotonic()
            for event in events:
                received.setdefault(event.value, t)
                cursor = max(cursor, event.seq)
            if STOP in received:
                break
    finally:
        out.put(received)
        await store.close()


def _rotator(backend: Backend, tasks: int, seconds: float, start: Any, out: Any) -> None:
    asyncio.run(_rotate_loop(backend, tasks, seconds, start, out))


async def _rotate_loop(backend: Backend, tasks: int, seconds: float, start: Any, out: Any) -> None:
    store = backend.make()
    await store.open()
    tag = uuid.uuid4().hex[:8]
    now = time.time()

    async def session(i: int) -> list[float]:
        sid = f"b-{tag}-{i}"
        leaf = hashlib.sha256(f"{sid}:0".encode()).digest()
        fam = Family(
            sid=sid,
            sub=f"user-{tag}-{i}",
            client_id="bench",
            scope="read",
            created_at=now,
            last_used_at=now,
            expires_at=now + 86400,
            idle_expires_at=now + 3600,
            current_hash=leaf,
        )
        await store.create_family(fam, RefreshTokenRecord(leaf, sid, now))
        await started.wait()
        latencies: list[float] = []
        n = 0
        while time.monotonic() < deadline:
            n += 1
            child = hashlib.sha256(f"{sid}:{n}".encode()).digest()
            t0 = time.perf_counter()
            ts = time.time()
            result = await store.rotate(
                leaf,
                RefreshTokenRecord(child, sid, ts, leaf),
                now=ts,
                grace=10.0,
                idle_expires_at=ts + 3600,
                revocation_until=ts + 900,
            )
            latencies.append(time.perf_counter() - t0)
            assert result.outcome.value == "rotated", result.outcome
            leaf = child
        return latencies

    started = asyncio.Event()
    deadline = float("inf")
    runners = [asyncio.create_task(session(i)) for i in range(tasks)]
    await asyncio.sleep(0.2)  # let every session create its family before the barrier
    await asyncio.to_thread(start.wait)
    deadline = time.monotonic() + seconds
    started.set()
    results = await asyncio.gather(*runners)
    out.put([x for r in results for x in r])
    await store.close()


# -- the leader ----------------------------------------------------------------------------
async def propagation(
    backend: Backend, revocations: int, followers: int, pace: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readies = [ctx.Event() for _ in range(followers)]
    procs = [ctx.Process(target=_follower, args=(backend, r, out)) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        if not await asyncio.to_thread(r.wait, 60):
            raise RuntimeError(f"{backend.name}: a follower did not start")
    store = backend.make()
    await store.open()
    sent: dict[str, float] = {}
    writes: list[float] = []
    try:
        for i in range(revocations):
            value = f"r{i}"
            now = time.time()
            t0 = time.monotonic()
            await store.add_revocation(RevocationKind.JTI, value, now=now, until=now + 3600)
            sent[value] = t0
            writes.append(time.monotonic() - t0)
            await asyncio.sleep(pace)
        await store.add_revocation(
            RevocationKind.JTI, STOP, now=time.time(), until=time.time() + 60
        )
        results = [await asyncio.to_thread(out.get, True, 60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
        await store.close()
    latencies = [got[v] - t0 for got in results for v, t0 in sent.items() if v in got]
    missing = len(sent) * followers - len(latencies)
    return {
        "n": len(latencies),
        "missing": missing,
        "p50": pct(latencies, 0.50),
        "p99": pct(latencies, 0.99),
        "max": max(latencies),
        "mean": statistics.fmean(latencies),
        "write_p50": pct(writes, 0.50),
        "write_p99": pct(writes, 0.99),
    }


async def throughput(
    backend: Backend, processes: int, tasks: int, seconds: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Event()
    procs = [
        ctx.Process(target=_rotator, args=(backend, tasks, seconds, start, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    await asyncio.sleep(0.5)
    start.set()
    results = [await asyncio.to_thread(out.get, True, seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    lat = [x for r in results for x in r]
    return {"ops": len(lat) / seconds, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}


# -- setup / teardown per backend ------------------------------------------------------------
async def available(backend: Backend) -> str | None:
    store = backend.make()
    try:
        await store.open()
        await store.ping()
    except (StoreUnavailable, OSError, ImportError) as exc:
        return f"{type(exc).__name__}"
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    return None


async def cleanup(backend: Backend) -> None:
    if backend.name == "redis":
        from tokenward.store.redis import RedisStore

        store = backend.make()
        assert isinstance(store, RedisStore)
        await store.drop()
        await store.close()
    elif backend.name.startswith("postgres"):
        import psycopg

        conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        async with conn:
            schema = backend.options["schema"]
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def backends(tmp: Path) -> list[Backend]:
    tag = uuid.uuid4().hex[:10]
    return [
        Backend("redis", "XREAD BLOCK", REDIS_URL, {"prefix": f"twbench{tag}"}),
        Backend(
            "postgres",
            "LISTEN/NOTIFY, events in the payload",
            POSTGRES_URL,
            {"schema": f"twbench_{tag}"},
        ),
        Backend(
            "postgres-reread",
            "LISTEN/NOTIFY, table re-read per wake-up (previous)",
            POSTGRES_URL,
            {"schema": f"twbench_r{tag}"},
            reread=True,
        ),
        Backend("sqlite", "polling (0.2 s)", f"sqlite:///{tmp / 'bench.db'}", {"timeout": 10.0}),
    ]


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revocations", type=int, default=1000)
    ap.add_argument("--followers", type=int, default=3)
    ap.add_argument("--pace", type=float, default=0.005)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--only", default="redis,postgres,postgres-reread,sqlite")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.revocations, args.seconds = 100, 1.0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmpdir:
        rows_p: list[str] = []
        rows_t: list[str] = []
        skipped: list[str] = []
        chosen = [b for b in backends(Path(tmpdir)) if b.name in args.only.split(",")]
        prop: dict[str, dict[str, Any]] = {}
        thr: dict[tuple[str, int], dict[str, Any]] = {}
        for b in chosen:
            problem = await available(b)
            if problem:
                skipped.append(f"{b.name} ({problem})")
                continue
            try:
                prop[b.name] = await propagation(b, args.revocations, args.followers, args.pace)
                for n in () if b.reread else (1, 3):  # the reread variant rotates alike
                    thr[(b.name, n)] = await throughput(b, n, args.tasks, args.seconds)
            finally:
                await cleanup(b)
            print(f"# done {b.name}", file=sys.stderr)
        ref = prop.get("redis")
        for b in chosen:
            if b.name not in prop:
                continue
            r = prop[b.name]
            ratio = f"{r['p99'] / ref['p99']:.1f}×" if ref else "–"
            rows_p.append(
                f"| {b.name} | {b.mechanism} | {r['n']} | {r['missing']} | {ms(r['p50'])} | "
                f"{ms(r['p99'])} | {ms(r['max'])} | {ratio} | "
                f"{ms(r['write_p50'])} / {ms(r['write_p99'])} |"
            )
        ref1 = thr.get(("redis", 1))
        for b in chosen:
            for n in (1, 3):
                if (b.name, n) not in thr:
                    continue
                t = thr[(b.name, n)]
                ratio = f"{t['ops'] / ref1['ops']:.2f}×" if ref1 else "–"
                rows_t.append(
                    f"| {b.name} | {n} | {n * args.tasks} | {t['ops']:,.0f} | {ratio} | "
                    f"{ms(t['p50'])} | {ms(t['p99'])} |"
                )
    print(
        f"Propagation: {args.revocations} revocations paced {args.pace * 1000:.0f} ms apart, "
        f"{args.followers} follower processes (latency in ms, over every event × follower).\n"
    )
    print(
        "| backend | follow mechanism | samples | missing | p50 | p99 | max | p99 vs Redis "
        "| revoking call p50 / p99 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows_p))
    print(
        f"\nStore-level `rotate` throughput, {args.seconds:.0f} s, {args.tasks} concurrent "
        "sessions per client process (latency in ms).\n"
    )
    print("| backend | processes | sessions | rotations/s | vs Redis (1 process) | p50 | p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows_t))
    if skipped:
        print(f"\nSkipped: {', '.join(skipped)}")
    print(
        f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after."
    )


if __name__ == "__main__":
    asyncio.run(main())

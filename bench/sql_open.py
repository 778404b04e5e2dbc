"""Cost of ``SQLStore.open()`` on an already-migrated database: the read-first fast path
against always taking the migration lock and running Alembic (the peer, in the same run).

Every server process, CLI call and worker opens the store, so this is startup cost; with
several processes starting at once the locked path also queues them behind each other
(``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL).

Measured per backend: p50 of one ``open()+close()`` (sequential), and the wall time of
``--concurrent`` stores opened at once with ``asyncio.gather`` (separate engines and pools,
as separate processes would have). Run: ``.venv/bin/python bench/sql_open.py``. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid

from tokenward.store.sql import SQLStore

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class AlwaysMigrate(SQLStore):
    """The peer: no version read first, straight to the lock + Alembic."""

    async def current_revision(self) -> str | None:
        return None


async def measure(cls: type[SQLStore], url: str, opts: dict[str, str], n: int, conc: int):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        store = cls(url, **opts)
        await store.open()
        await store.close()
        samples.append((time.perf_counter() - t) * 1000)
    stores = [cls(url, **opts) for _ in range(conc)]
    t = time.perf_counter()
    await asyncio.gather(*(s.open() for s in stores))
    wall = (time.perf_counter() - t) * 1000
    for s in stores:
        await s.close()
    return statistics.median(samples), wall


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--concurrent", type=int, default=6)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    schema = f"tw_bench_{uuid.uuid4().hex[:8]}"
    backends = [
        ("sqlite", f"sqlite:///{tmp}/bench.db", {}),
        ("postgres", POSTGRES_URL, {"schema": schema}),
    ]
    print(
        "| backend | open() path | open+close p50 ms | "
        f"{args.concurrent} concurrent opens, wall ms | ratio (p50) |"
    )
    print("|---|---|---:|---:|---:|")
    for name, url, opts in backends:
        try:
            async with SQLStore(url, **opts):  # migrate once
                pass
        except Exception as exc:
            print(f"| {name} | skipped: {type(exc).__name__} | | | |")
            continue
        slow = await measure(AlwaysMigrate, url, opts, args.n, args.concurrent)
        fast = await measure(SQLStore, url, opts, args.n, args.concurrent)
        print(f"| {name} | lock + Alembic (peer) | {slow[0]:.1f} | {slow[1]:.0f} | 1.00× |")
        print(
            f"| {name} | read version first | {fast[0]:.1f} | {fast[1]:.0f} | "
            f"{fast[0] / slow[0]:.2f}× |"
        )
    if any(n == "postgres" for n, _, _ in backends):
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    asyncio.run(main())

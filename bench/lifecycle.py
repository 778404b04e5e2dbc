"""Lifecycle benchmark: refresh rotations per backend, denylist checks, denylist memory.

Every figure is measured next to a peer in the same run:

* rotations — tokenward ``SessionManager.refresh`` (ES256 access token, rotation, grace/reuse
  bookkeeping) on memory, SQLite, PostgreSQL and Redis (the last two when reachable) vs
  djangorestframework-simplejwt's ``TokenRefreshSerializer`` with ``ROTATE_REFRESH_TOKENS`` +
  ``BLACKLIST_AFTER_ROTATION`` on SQLite, also ES256;
* denylist check — ``Denylist.check(claims)`` at 1 million entries vs a plain ``dict`` lookup
  of the jti and vs simplejwt's approach (a database query per check:
  ``BlacklistedToken.objects.filter(token__jti=...).exists()`` on SQLite, plus raw ``sqlite3``);
* memory — bytes per live entry at 1 million entries (``tracemalloc``, strings included) for
  the ``Denylist`` vs a ``dict`` of jti → ``until`` float.

``--compare`` adds, for SQLite and PostgreSQL, the same chain on a store running the former
lookup path (``SQLStore.single_reads = False``: every lookup its own ``BEGIN``…``COMMIT``, token
and family as two SELECTs) with ``pool_pre_ping=True``, next to the current one, in the same
interleaved rounds: rows "sqlite (before)" / "postgres (before)".

Security events below ``warning`` are filtered out (no log I/O in the measured loop; simplejwt
logs nothing either). Run: ``.venv/bin/python bench/lifecycle.py`` (``--quick`` for a smoke
run). Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import secrets
import sqlite3
import sys
import tempfile
import time
import timeit
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from tokenward import FrozenClock, Issuer, KeyRing, SessionManager
from tokenward.claims import AccessTokenClaims
from tokenward.revocation import Denylist
from tokenward.store import RevocationEvent, RevocationKind, Store, store_from_url

POSTGRES_URL = os.environ.get(
    "TOKENWARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"
)
REDIS_URL = os.environ.get("TOKENWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
T0 = 1_800_000_000.0


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- rotations ----------------------------------------------------------------------------


def make_manager(store: Store) -> SessionManager:
    ring = KeyRing.generate("ES256")
    issuer = Issuer(ring, issuer="https://bench", audience="api")
    return SessionManager(issuer, store)


class Chain:
    """One sequential refresh chain; ``step()`` performs one refresh. Samples accumulate."""

    def __init__(self, name: str, store: str, step: Callable[[], Awaitable[None]]) -> None:
        self.name, self.store, self.step = name, store, step
        self.lat: list[float] = []
        self.elapsed = 0.0

    async def run(self, n: int) -> None:
        t_start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await self.step()
            self.lat.append(time.perf_counter() - t)
        self.elapsed += time.perf_counter() - t_start

    def result(self) -> dict[str, float]:
        return {
            "rate": len(self.lat) / self.elapsed,
            "p50": pct(self.lat, 0.50) * 1e3,
            "p99": pct(self.lat, 0.99) * 1e3,
        }


async def tokenward_chain(name: str, store: Store) -> Chain:
    mgr = make_manager(store)
    token = (await mgr.start(sub="bench", client_id="web")).refresh_token

    async def step() -> None:
        nonlocal token
        token = (await mgr.refresh(token, client_id="web")).refresh_token

    return Chain("tokenward", name, step)


async def concurrent_rate(store: Store, n: int, concurrency: int) -> float:
    """Independent sessions refreshing at the same time (no peer: simplejwt is sync)."""
    mgr = make_manager(store)
    tokens = [
        (await mgr.start(sub=f"u{i}", client_id="web")).refresh_token for i in range(concurrency)
    ]
    per = max(1, n // concurrency)

    async def chain(tok: str) -> None:
        for _ in range(per):
            tok = (await mgr.refresh(tok)).refresh_token

    t_start = time.perf_counter()
    await asyncio.gather(*(chain(t) for t in tokens))
    return per * concurrency / (time.perf_counter() - t_start)


def before(store: Store) -> Store:
    """The former SQL lookup path (for ``--compare``)."""
    store.single_reads = False  # type: ignore[attr-defined]
    return store


async def backend_store(
    name: str, tmp: Path, *, old: bool = False
) -> tuple[Store | None, Callable[[], Any]]:
    opts: dict[str, Any] = {"pool_pre_ping": True} if old else {}
    if name == "memory":
        return store_from_url("memory://"), lambda: None
    if name == "sqlite":
        db = tmp / ("bench-before.db" if old else "bench.db")
        return store_from_url(f"sqlite:///{db}"), lambda: None
    if name == "postgres":
        try:
            import psycopg

            psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
        except Exception:
            return None, lambda: None
        schema = f"tw_bench_{uuid.uuid4().hex[:8]}"

        def drop() -> None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        return store_from_url(POSTGRES_URL, schema=schema, **opts), drop
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception:
        return None, lambda: None
    prefix = f"twbench{uuid.uuid4().hex[:8]}"

    def flush() -> None:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)

    return store_from_url(REDIS_URL, prefix=prefix), flush


def simplejwt_setup(tmp: Path) -> Any:
    """Configure a minimal Django with simplejwt's blacklist app on SQLite (ES256)."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(Path(__file__).parent / "peers"))
    from _es256 import key_pair_pem  # the key set-up the HTTP peers use

    private, public = key_pair_pem()
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_hex(32),
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework_simplejwt.token_blacklist",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "sj.db")}},
        USE_TZ=True,
        SIMPLE_JWT={
            "ROTATE_REFRESH_TOKENS": True,
            "BLACKLIST_AFTER_ROTATION": True,
            "ALGORITHM": "ES256",
            "SIGNING_KEY": private,
            "VERIFYING_KEY": public,
        },
    )
    # the ORM runs inside the bench's event loop (blocking it, as a sync view would)
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    return User.objects.create_user("bench", password=None)


def simplejwt_chain(user: Any) -> Chain:
    from rest_framework_simplejwt.serializers import TokenRefreshSerializer
    from rest_framework_simplejwt.tokens import RefreshToken

    token = str(RefreshToken.for_user(user))

    async def step() -> None:  # synchronous inside: Django's ORM blocks the loop, as it would
        nonlocal token
        s = TokenRefreshSerializer(data={"refresh": token})
        s.is_valid(raise_exception=True)
        token = s.validated_data["refresh"]

    return Chain("simplejwt 5.5 (rotate + blacklist)", "sqlite (Django ORM)", step)


# -- denylist -----------------------------------------------------------------------------


def jti_values(n: int) -> list[str]:
    return [secrets.token_urlsafe(16) for _ in range(n)]  # what Issuer uses for jti


def events_for(values: list[str], first_seq: int = 1) -> list[RevocationEvent]:
    # untils spread over one access-token lifetime (15 min), as in steady state
    return [
        RevocationEvent(first_seq + i, RevocationKind.JTI, v, T0 + 1 + (i % 900), T0)
        for i, v in enumerate(values)
    ]


def memory_per_entry(n: int) -> dict[str, float]:
    clock = FrozenClock(T0)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    values = jti_values(n)
    dl = Denylist(clock=clock)
    batch = 50_000
    for i in range(0, n, batch):  # the follower applies pages, never 1M events at once
        dl.apply(events_for(values[i : i + batch], i + 1))
    del values
    gc.collect()
    ours = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    assert len(dl) == n
    del dl
    gc.collect()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    values = jti_values(n)
    peer: dict[str, float] = {}
    for i, v in enumerate(values):
        peer[v] = T0 + 1 + (i % 900)
    del values
    gc.collect()
    dict_bytes = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    del peer
    gc.collect()
    return {"denylist": ours, "dict": dict_bytes}


def check_ns(n: int, loops: int) -> tuple[dict[str, float], Denylist]:
    clock = FrozenClock(T0)
    values = jti_values(n)
    dl = Denylist(clock=clock)
    for i in range(0, n, 50_000):
        dl.apply(events_for(values[i : i + 50_000], i + 1))
    dl.apply([RevocationEvent(n + 1, RevocationKind.SID, "sid-x", T0 + 900, T0)])
    dl.apply([RevocationEvent(n + 2, RevocationKind.SUB, "carol", T0 + 900, T0)])
    ok = AccessTokenClaims(
        iss="i",
        sub="alice",
        aud=("a",),
        exp=T0 + 900,
        iat=T0,
        jti="not-revoked",
        client_id="c",
        sid="s1",
    )
    assert len(dl) == n + 2
    peer = dict.fromkeys(values, T0 + 900.0)

    def dict_check(claims: AccessTokenClaims, d: dict[str, float] = peer) -> None:
        if claims.jti in d:
            raise RuntimeError("revoked")

    def best(stmt: Callable[[], None]) -> float:
        return min(timeit.repeat(stmt, number=loops, repeat=5)) / loops * 1e9

    check = dl.check
    results = {
        "denylist": best(lambda: check(ok)),
        "dict": best(lambda: dict_check(ok)),
    }
    return results, dl


def db_check_ns(tmp: Path, n_rows: int, loops: int, user: Any | None) -> dict[str, float]:
    out: dict[str, float] = {}
    db = sqlite3.connect(tmp / "denylist.db")
    db.execute("CREATE TABLE blacklist (jti TEXT PRIMARY KEY, until REAL)")
    db.executemany("INSERT INTO blacklist VALUES (?, ?)", ((v, T0) for v in jti_values(n_rows)))
    db.commit()

    def raw() -> None:
        db.execute("SELECT 1 FROM blacklist WHERE jti = ?", ("not-revoked",)).fetchone()

    out["sqlite3"] = min(timeit.repeat(raw, number=loops, repeat=3)) / loops * 1e9
    if user is not None:
        from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

        def orm() -> None:
            BlacklistedToken.objects.filter(token__jti="not-revoked").exists()

        orm_loops = max(100, loops // 20)
        out["simplejwt"] = min(timeit.repeat(orm, number=orm_loops, repeat=3)) / orm_loops * 1e9
    return out


# -- main ---------------------------------------------------------------------------------


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


async def all_rotations(
    args: argparse.Namespace, tmp: Path
) -> tuple[list[tuple[Chain, float | None]], Chain | None]:
    """Interleaved rounds: every chain runs ``n / rounds`` refreshes per round, in a rotating
    order, so a noisy neighbour (disk, CPU) hits every implementation alike."""
    opened: list[tuple[Store, Callable[[], Any]]] = []
    chains: list[Chain] = []
    variants = [(name, False) for name in ("memory", "sqlite", "postgres", "redis")]
    if args.compare:
        variants[2:2] = [("sqlite", True)]
        variants[4:4] = [("postgres", True)]
    for name, old in variants:
        store, cleanup = await backend_store(name, tmp, old=old)
        if store is None:
            print(f"<!-- {name}: not reachable, skipped -->")
            continue
        if old:
            store = before(store)
        await store.open()
        opened.append((store, cleanup))
        chains.append(await tokenward_chain(f"{name} (before)" if old else name, store))
    peer: Chain | None = None
    try:
        peer = simplejwt_chain(simplejwt_setup(tmp))
    except ImportError as exc:  # pragma: no cover - the peer is a dev dependency
        print(f"<!-- simplejwt unavailable: {exc} -->")
    everyone = chains + ([peer] if peer else [])
    try:
        for chain in everyone:  # warm up (connections, scripts, secrets), then forget
            await chain.run(20)
            chain.lat.clear()
            chain.elapsed = 0.0
        rounds = 10
        for r in range(rounds):
            order = everyone[r % len(everyone) :] + everyone[: r % len(everyone)]
            for chain in order:
                await chain.run(max(1, args.rotations // rounds))
        out = [
            (chain, await concurrent_rate(store, args.rotations, args.concurrency))
            for chain, (store, _) in zip(chains, opened, strict=True)
        ]
    finally:
        for store, cleanup in opened:
            await store.close()
            cleanup()
    return out, peer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--rotations", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also run SQLite/PostgreSQL on the former lookup path (same run, interleaved)",
    )
    ap.add_argument(
        "--rotations-only", action="store_true", help="skip the denylist and memory sections"
    )
    args = ap.parse_args()
    # security events are logged by the application; here they would measure the terminal
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.quick:
        args.rotations, args.entries = 200, 50_000
    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    print(f"# tokenward lifecycle benchmark — Python {sys.version.split()[0]}, ", end="")
    print(f"{os.cpu_count()} CPUs\n")

    print("## Refresh rotations\n")
    print("One sequential chain per implementation, interleaved in 10 rounds (p50/p99 per ", end="")
    print(f"refresh); then {args.concurrency} tokenward sessions refreshing concurrently.\n")
    rows, peer = asyncio.run(all_rotations(args, tmp))
    sj = peer.result() if peer else None
    row(
        "implementation", "store", "rotations/s", "p50 ms", "p99 ms", "vs simplejwt", "concurrent/s"
    )
    row("---", "---", "---:", "---:", "---:", "---:", "---:")
    for chain, conc in rows:
        r = chain.result()
        ratio = f"{r['rate'] / sj['rate']:.2f}×" if sj else "–"
        row(
            chain.name,
            chain.store,
            f"{r['rate']:,.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            ratio,
            f"{conc:,.0f}" if conc else "–",
        )
    if peer and sj:
        row(
            peer.name,
            peer.store,
            f"{sj['rate']:,.0f}",
            f"{sj['p50']:.2f}",
            f"{sj['p99']:.2f}",
            "1.00×",
            "–",
        )
    if args.rotations_only:
        return
    user = None
    if peer:
        from django.contrib.auth.models import User

        user = User.objects.get(username="bench")

    print(f"\n## Denylist check (token not revoked: the common path), {args.entries:,} entries\n")
    loops = 200_000 if not args.quick else 20_000
    checks, dl = check_ns(args.entries, loops)
    del dl
    gc.collect()
    db = db_check_ns(tmp, min(args.entries, 100_000), 20_000 if not args.quick else 2_000, user)
    base = checks["denylist"]
    row("check", "ns/op", "vs Denylist")
    row("---", "---:", "---:")
    row("tokenward `Denylist.check` (jti + sid + sub)", f"{base:,.0f}", "1.00×")
    row(
        "plain `dict` lookup of the jti only",
        f"{checks['dict']:,.0f}",
        f"{checks['dict'] / base:.2f}×",
    )
    row(
        "raw `sqlite3` SELECT per check (100k rows, indexed)",
        f"{db['sqlite3']:,.0f}",
        f"{db['sqlite3'] / base:.0f}×",
    )
    if "simplejwt" in db:
        row(
            "simplejwt: `BlacklistedToken...exists()` per check (Django ORM, SQLite)",
            f"{db['simplejwt']:,.0f}",
            f"{db['simplejwt'] / base:.0f}×",
        )

    print(f"\n## Memory per live denylist entry, {args.entries:,} jti entries ", end="")
    print("(tracemalloc, strings included)\n")
    mem = memory_per_entry(args.entries)
    row("structure", "bytes/entry", "vs Denylist")
    row("---", "---:", "---:")
    row("tokenward `Denylist` (set + expiry buckets)", f"{mem['denylist']:.0f}", "1.00×")
    row("`dict` jti → until (float)", f"{mem['dict']:.0f}", f"{mem['dict'] / mem['denylist']:.2f}×")


if __name__ == "__main__":
    main()

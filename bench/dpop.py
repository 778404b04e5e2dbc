"""DPoP cost at a resource server, in ONE process run: what a DPoP-bound request costs over a
plain bearer request, and what the proof replay cache costs per backend.

Measured (µs per operation, best of ``--repeat`` interleaved repeats, GC on):

* ``bearer verify``: :class:`tokenward.Verifier` ``verify()`` of an ES256 access token with its
  verified-token cache off (``cache_size=0``) — the peer every DPoP figure is a ratio to;
* ``proof verify``: :func:`tokenward.dpop.verify_proof` of one ES256 (or EdDSA) proof with
  ``ath`` (parse, header rules, key from the ``jwk`` header — cached per key —, signature,
  claims, htu normalisation);
* ``bound request``: what every guard integration does for a DPoP request: ``verify()`` of the
  bound token (cache off) + :meth:`tokenward.guard.dpop.DPoPChecker.check` (proof, ``cnf.jkt``,
  in-process replay cache), each call with a fresh proof (a new ``jti``; the proofs are made
  before timing);
* replay cache, one ``seen``/``dpop_jti_seen`` per call with a fresh key: the guard's
  in-process :class:`~tokenward.dpop.ReplayCache` and shared
  :class:`~tokenward.guard.dpop.RedisReplayCache`; the server's store method on memory,
  SQLite (file), PostgreSQL and Redis (one awaited call each, as a request does).

``python bench/dpop.py`` prints the table and writes it into docs/benchmarks.md between the
``bench:dpop`` markers (``--no-write`` to skip). Backends that are not reachable are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tokenward import KeyRing, Verifier
from tokenward.dpop import DPoPKey, ReplayCache, verify_proof
from tokenward.guard.dpop import DPoPChecker, RedisReplayCache
from tokenward.issuer import Issuer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:dpop:start -->", "<!-- bench:dpop:end -->"
ISS, AUD, URL = "https://auth.example.com", "api", "https://api.example.com/orders"
REDIS_URL = os.environ.get("TOKENWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "TOKENWARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def best(fn: Callable[[int], None], n: int, repeat: int) -> float:
    """µs per operation: the best of ``repeat`` runs of ``fn(n)``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def cpu_rows(n: int, repeat: int) -> list[tuple[str, float]]:
    ring = KeyRing.generate("ES256")
    issuer = Issuer(ring, issuer=ISS, audience=AUD)
    verifier = Verifier(ring.public_jwks(), issuer=ISS, audience=AUD, cache_size=0)
    plain = issuer.issue_access_token(sub="alice", client_id="web", scope="read")
    rows: list[tuple[str, float]] = []
    keys = {alg: DPoPKey.generate(alg) for alg in ("ES256", "EdDSA")}
    bound = {
        alg: issuer.issue_access_token(sub="alice", client_id="web", extra={"cnf": {"jkt": k.jkt}})
        for alg, k in keys.items()
    }
    one = {alg: k.proof("GET", URL, access_token=bound[alg]) for alg, k in keys.items()}
    total = n * repeat * 2 + 10
    fresh = {
        alg: [k.proof("GET", URL, access_token=bound[alg]) for _ in range(total)]
        for alg, k in keys.items()
    }

    def bearer(k: int) -> None:
        for _ in range(k):
            verifier.verify(plain)

    def proof_only(alg: str) -> Callable[[int], None]:
        def run(k: int) -> None:
            p, at = one[alg], bound[alg]
            for _ in range(k):
                verify_proof(p, htm="GET", htu=URL, access_token=at)

        return run

    def bound_request(alg: str) -> Callable[[int], None]:
        checker = DPoPChecker(replay=ReplayCache())
        proofs = iter(fresh[alg])
        at = bound[alg]

        def run(k: int) -> None:
            for _ in range(k):
                claims = verifier.verify(at)
                checker.check(
                    claims, scheme="DPoP", token=at, method="GET", url=URL, proofs=[next(proofs)]
                )

        return run

    items: list[tuple[str, Callable[[int], None]]] = [("bearer verify (ES256 token)", bearer)]
    for alg in keys:
        items.append((f"proof verify ({alg} proof)", proof_only(alg)))
        items.append((f"bound request: token + {alg} proof + replay", bound_request(alg)))
    results: dict[str, float] = {}
    for _ in range(repeat):  # interleaved: drift hits every item alike
        for name, fn in items:
            us = best(fn, n, 1)
            results[name] = min(results.get(name, us), us)
    for name, _ in items:
        rows.append((name, results[name]))
    return rows


def replay_rows(n: int, repeat: int) -> list[tuple[str, float | None]]:
    rows: list[tuple[str, float | None]] = []

    def keys() -> list[str]:
        return [secrets.token_urlsafe(32) for _ in range(n)]

    def timed(seen: Callable[[str, float], bool]) -> float:
        results = []
        for _ in range(repeat):
            ks = keys()  # fresh keys, made before timing
            t0 = time.perf_counter()
            for x in ks:
                seen(x, 70)
            results.append((time.perf_counter() - t0) / n * 1e6)
        return min(results)

    rows.append(("guard, in-process ReplayCache", timed(ReplayCache().seen)))
    try:
        redis_cache = RedisReplayCache(REDIS_URL, prefix=f"twbench:{secrets.token_hex(4)}:")
        redis_cache.seen("probe", 1)
        rows.append(("guard, shared RedisReplayCache", timed(redis_cache.seen)))
        redis_cache.close()
    except Exception:
        rows.append(("guard, shared RedisReplayCache", None))
    rows += asyncio.run(_store_rows(n, repeat))
    return rows


async def _store_rows(n: int, repeat: int) -> list[tuple[str, float | None]]:
    from tokenward.store import store_from_url

    tmp = tempfile.mkdtemp(prefix="twbench-")
    schema = f"twbench_{secrets.token_hex(4)}"
    urls = {
        "memory": ("memory://", {}),
        "SQLite (file)": (f"sqlite:///{tmp}/bench.db", {}),
        "PostgreSQL": (f"{POSTGRES_URL}?schema={schema}", {}),
        "Redis": (REDIS_URL, {"prefix": f"twbench{secrets.token_hex(4)}"}),
    }
    rows: list[tuple[str, float | None]] = []
    for name, (url, opts) in urls.items():
        label = f"server store.dpop_jti_seen, {name}"
        try:
            store = store_from_url(url, **opts)
            await store.open()
        except Exception:
            rows.append((label, None))
            continue
        try:
            now = time.time()
            results = []
            for _ in range(repeat):
                ks = [secrets.token_urlsafe(32) for _ in range(n)]
                t0 = time.perf_counter()
                for k in ks:
                    await store.dpop_jti_seen(k, now=now, until=now + 70)
                results.append((time.perf_counter() - t0) / n * 1e6)
            rows.append((label, min(results)))
            if name == "PostgreSQL":
                from sqlalchemy import text

                engine = getattr(store, "_engine", None)
                if engine is not None:
                    async with engine.begin() as conn:
                        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            elif name == "Redis":
                await store.drop()  # type: ignore[attr-defined]
        finally:
            await store.close()
    return rows


def render(cpu: list[tuple[str, float]], replay: list[tuple[str, float | None]], n: int) -> str:
    base = cpu[0][1]
    lines = [
        f"DPoP at a resource server (`python bench/dpop.py`, {n} ops × best of repeats, "
        f"Python {platform.python_version()}, {platform.machine()}; one run):",
        "",
        "| per request | µs | × bearer verify |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {us:.1f} | {us / base:.2f} |" for name, us in cpu]
    lines += ["", "| replay cache, one check | µs |", "|---|---:|"]
    lines += [f"| {name} | {'n/a' if us is None else f'{us:.1f}'} |" for name, us in replay]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    n, repeat = (50, 2) if a.quick else (a.n, a.repeat)
    table = render(cpu_rows(n, repeat), replay_rows(max(50, n // 2), repeat), n)
    print(table)
    if not a.no_write and not a.quick and DOC.exists():
        text = DOC.read_text()
        block = f"{START}\n{table}\n{END}"
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n## DPoP\n\n" + block + "\n"
        DOC.write_text(text)
        print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

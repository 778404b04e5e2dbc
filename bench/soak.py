"""Soak: mixed load against ``tokenward serve --workers 2`` for a while; report 5xx, RSS growth
after warm-up and the store size over time (retention must keep it bounded).

    .venv/bin/python bench/soak.py --seconds 600          # make soak (10 minutes)
    .venv/bin/python bench/soak.py --seconds 30           # the CI-sized run (tests/drills)

The soak config makes everything short-lived so that retention is exercised many times:
access tokens live 5 s, refresh families 6 s idle / 12 s absolute, the sweeper runs every 2 s
with no retention margin. Each virtual user logs in, then loops: refresh, ``/userinfo``,
``/introspect``; now and then it revokes its session (``/revoke``) and logs in again; when
its family expires it logs in again. The answer is one JSON line (``--json``) or a table.

Pass criteria (exit code 1 otherwise): 0 responses ≥ 500, no transport errors, RSS of the
workers at the end ≤ 1.05 × RSS after warm-up (the first 30 %), every store table at the
end ≤ 2 × its size at the end of warm-up (bounded, not growing with the run length; revocation
events live the access TTL + 30 s, so they are checked only when the warm-up is longer).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import httpx  # noqa: E402

from support.live import PASSWORD, Serve, rss_kib  # noqa: E402

SOAK_ENV = {
    "TOKENWARD_ACCESS_TOKEN_TTL": "5",
    "TOKENWARD_LEEWAY": "0",
    "TOKENWARD_REFRESH_IDLE_TTL": "6",
    "TOKENWARD_REFRESH_ABSOLUTE_TTL": "12",
    "TOKENWARD_REFRESH_GRACE_SECONDS": "1",
    "TOKENWARD_PURGE_INTERVAL": "2",
    "TOKENWARD_RETENTION_MARGIN": "0",
    "TOKENWARD_LOG_JSON": "true",
}
TABLES = ("families", "refresh_tokens", "revocations")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[int] = Counter()
        self.ops: Counter[str] = Counter()
        self.transport_errors = 0

    def record(self, op: str, r: httpx.Response) -> httpx.Response:
        with self.lock:
            self.status[r.status_code] += 1
            self.ops[op] += 1
        return r


def user_loop(serve: Serve, stats: Stats, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    user, client = f"u{seed % 10}", ("web", "mobile")[seed % 2]
    with httpx.Client(base_url=serve.base, timeout=30) as http:

        def login() -> dict[str, str]:
            body = {"username": user, "password": PASSWORD, "client_id": client, "scope": "read"}
            r = stats.record("login", http.post("/login", json=body))
            return dict(r.json()) if r.status_code == 200 else {}

        try:
            pair = login()
            while not stop.is_set():
                if not pair:
                    pair = login()
                    continue
                r = stats.record("refresh", http.post("/token", data={
                    "grant_type": "refresh_token", "client_id": client,
                    "refresh_token": pair["refresh_token"]}))  # fmt: skip
                if r.status_code != 200:  # the family expired (absolute lifetime): log in again
                    pair = login()
                    continue
                pair = dict(r.json())
                auth = {"Authorization": f"Bearer {pair['access_token']}"}
                stats.record("userinfo", http.get("/userinfo", headers=auth))
                stats.record(
                    "introspect",
                    http.post(
                        "/introspect", data={"token": pair["access_token"]}, auth=serve.svc_auth
                    ),
                )
                if rnd.random() < 0.1:
                    stats.record(
                        "revoke",
                        http.post(
                            "/revoke", data={"token": pair["refresh_token"], "client_id": client}
                        ),
                    )
                    pair = login()
                time.sleep(rnd.uniform(0.0, 0.02))
        except httpx.TransportError:
            with stats.lock:
                stats.transport_errors += 1


def store_sizes(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=10) as c:
        return {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def worker_rss(serve: Serve) -> int:
    pids = serve.pids()
    workers = pids[1:] or pids
    return sum(rss_kib(p) for p in workers)


def soak(seconds: float, users: int, workers: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-soak-"))
    db = tmp / "tw.db"
    serve = Serve(tmp, f"sqlite:///{db}", workers=workers, extra_env=SOAK_ENV).start()
    stats, stop = Stats(), threading.Event()
    threads = [
        threading.Thread(target=user_loop, args=(serve, stats, stop, i)) for i in range(users)
    ]
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        warm_at = seconds * 0.3
        warm: dict[str, float] | None = None
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(min(2.0, max(0.0, seconds - elapsed)))
            sizes = store_sizes(db)
            sample = {"t": round(time.monotonic() - t0, 1), "rss_kib": worker_rss(serve), **sizes}
            samples.append(sample)
            if warm is None and sample["t"] >= warm_at:
                warm = sample
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        serve.stop()
    assert warm is not None
    end = samples[-1]
    largest = max(TABLES, key=lambda t: max(s[t] for s in samples))
    result: dict[str, object] = {
        "seconds": seconds,
        "workers": workers,
        "users": users,
        "requests": sum(stats.status.values()),
        "rps": round(sum(stats.status.values()) / seconds, 1),
        "ops": dict(stats.ops),
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "5xx": sum(v for k, v in stats.status.items() if k >= 500),
        "transport_errors": stats.transport_errors,
        "rss_warm_kib": warm["rss_kib"],
        "rss_end_kib": end["rss_kib"],
        "rss_growth_pct": round(100 * (end["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"], 2),
        "store_warm": {t: warm[t] for t in TABLES},
        "store_end": {t: end[t] for t in TABLES},
        "store_max": {t: max(s[t] for s in samples) for t in TABLES},
        "logins": stats.ops["login"],
        "largest_table": largest,
    }
    # revocation events live access TTL + 30 s margin: checked once the warm-up is longer
    checked = [t for t in TABLES if t != "revocations" or warm["t"] > 40]
    result["store_checked"] = checked
    ok = (
        result["5xx"] == 0
        and stats.transport_errors == 0
        and end["rss_kib"] <= 1.05 * warm["rss_kib"]
        and all(end[t] <= 2 * max(warm[t], 1) for t in checked)
    )
    result["ok"] = ok
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = soak(a.seconds, a.users, a.workers)
    if a.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

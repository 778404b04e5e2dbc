"""Redis Cluster failover, measured: kill a master (SIGKILL) under a login/refresh/revoke load
against one ``tokenward serve --store redis+cluster://...`` and report, per round (each on a
fresh local cluster of 3 masters + 3 replicas, ``cluster-node-timeout 1000``):

* the 503 window of the failed slot range: from the kill to the first 200 of a refresh of a
  family living on the killed master (probed every 20 ms), and how many 503 it answered;
* the load's answers (only 200 and 503 are allowed) and its acknowledged revocations;
* lost acknowledged revocations after the failover (must be 0).

``--victim shard`` kills a master holding family shards only; ``--victim global`` kills the
master of the global ``{prefix}`` slot (users, clients, the feed): every sign-in fails closed
until the promotion. The small version of this drill runs in ``make test``
(``tests/drills/test_cluster_failover.py``).

    .venv/bin/python bench/failover.py --rounds 3 --victim shard
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.live import Serve  # noqa: E402
from support.load import Load  # noqa: E402
from support.redis_cluster import LocalCluster  # noqa: E402
from tokenward.store.redis import RedisClusterStore  # noqa: E402

PREFIX = "twbench"


def master_of(cluster: LocalCluster, key: str) -> int:
    from redis.cluster import RedisCluster

    rc = RedisCluster(host="127.0.0.1", port=cluster.alive()[0])
    try:
        port: int = rc.get_node_from_key(key).port
        return port
    finally:
        rc.close()


def login_on(serve: Serve, cluster: LocalCluster, master: int) -> dict[str, str]:
    keys = RedisClusterStore(cluster.url, prefix=PREFIX)
    for _ in range(500):
        body = serve.login("alice", client_id="web", scope="read")
        if master_of(cluster, keys.family_key(body["session_id"])) == master:
            return body
    raise RuntimeError("no session landed on the master")


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    body = {"grant_type": "refresh_token", "client_id": "web", "refresh_token": token}
    return http.post("/token", data=body)


def one_round(victim_kind: str, seconds_after: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster").start()
        serve = Serve(Path(tmp), f"{cluster.url}?prefix={PREFIX}")
        load: Load | None = None
        try:
            serve.start()
            global_master = master_of(cluster, f"{{{PREFIX}}}")
            if victim_kind == "global":
                victim = global_master
            else:
                victim = next(p for p in cluster.masters() if p != global_master)
            probe = login_on(serve, cluster, victim)
            doomed = login_on(serve, cluster, victim)
            load = Load(serve, refreshers=3, sessions_each=3).start()
            time.sleep(2.0)
            with httpx.Client(base_url=serve.base, timeout=15) as http:
                r = http.post(
                    "/revoke", data={"token": doomed["refresh_token"], "client_id": "web"}
                )
                assert r.status_code == 200, r.text
                before = Counter(load.statuses)
                cluster.kill(victim)
                killed = time.monotonic()
                seen: Counter[int] = Counter()
                while time.monotonic() - killed < 60:
                    r = refresh(http, probe["refresh_token"])
                    seen[r.status_code] += 1
                    if r.status_code == 200:
                        break
                    time.sleep(0.02)
                recovered = time.monotonic() - killed
                during = Counter(load.statuses)
                during.subtract(before)
                time.sleep(seconds_after)
                load.stop()
                lost = 0
                r = refresh(http, doomed["refresh_token"])
                lost += r.status_code != 400
                for ack in load.acks:
                    u = http.get("/userinfo", headers={"Authorization": f"Bearer {ack.at}"})
                    lost += u.status_code != 401
            bad = {k: v for k, v in load.statuses.items() if k not in (200, 503)}
            return {
                "recovered_s": recovered,
                "probe_503": float(seen[503]),
                "probe_other": float(sum(v for k, v in seen.items() if k not in (200, 503))),
                "load_200": float(load.statuses[200]),
                "load_503": float(load.statuses[503]),
                "load_503_during": float(during[503]),
                "load_other": float(sum(bad.values())),
                "acks": float(len(load.acks) + 1),
                "lost": float(lost),
            }
        finally:
            if load is not None:
                load.stop()
            serve.stop()
            cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--victim", choices=["shard", "global"], default="shard")
    ap.add_argument("--after", type=float, default=3.0, help="seconds of load after recovery")
    args = ap.parse_args()
    rows = []
    for i in range(args.rounds):
        row = one_round(args.victim, args.after)
        rows.append(row)
        print(
            f"round {i + 1}: 503 window {row['recovered_s']:.2f} s ({row['probe_503']:.0f} probes"
            f" 503), load 200={row['load_200']:.0f} 503={row['load_503']:.0f}"
            f" other={row['load_other']:.0f}, acknowledged revocations {row['acks']:.0f},"
            f" lost {row['lost']:.0f}"
        )
    windows = [r["recovered_s"] for r in rows]
    print(
        f"\n{args.victim} master killed, {args.rounds} rounds: 503 window median "
        f"{statistics.median(windows):.2f} s (min {min(windows):.2f}, max {max(windows):.2f});"
        f" non-200/503 answers {sum(r['load_other'] + r['probe_other'] for r in rows):.0f};"
        f" lost acknowledged revocations {sum(r['lost'] for r in rows):.0f}"
    )


if __name__ == "__main__":
    main()

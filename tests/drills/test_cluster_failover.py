"""Failover drill: a Redis Cluster master is killed (SIGKILL) under a login/refresh/revoke load
against ``tokenward serve --store redis+cluster://...``, without restarting the server.

The drill's own cluster (3 masters + 3 replicas, ``cluster-node-timeout 1000``; the session's
shared one is never killed). The master killed holds some of the families' shards but not the
global ``{prefix}`` slot (users, clients, the feed), so the "failed slot range" is the families
living there. Checks:

* fail closed: a refresh of a family on the failed master answers 503 (never 500, never a
  success that could be lost) until its replica is promoted, then 200 — the same server;
* the load sees only 200 and 503, and every load session continues afterwards;
* nothing acknowledged is lost: a revocation acknowledged on the failed master just before the
  kill (``WAIT 1`` succeeded), and every revocation the load got a 200 for before, during and
  after the failover, is in force afterwards (refresh refused, ``/userinfo`` 401,
  ``/introspect`` inactive).

The measured figures (the 503 window, the time to recover) come from ``bench/failover.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from support.live import Serve
from support.load import Load
from support.redis_cluster import LocalCluster

# serial: a failover is timed by the cluster (node timeout, election) on the real clock
pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.serial]

PREFIX = "twdrill"
RECOVERY_LIMIT = 30.0  # "eventually": the cluster promotes the replica within a few seconds


def _master_of(cluster: LocalCluster, key: str) -> int:
    from redis.cluster import RedisCluster

    rc = RedisCluster(host="127.0.0.1", port=cluster.alive()[0])
    try:
        port: int = rc.get_node_from_key(key).port
        return port
    finally:
        rc.close()


def _family_key(cluster: LocalCluster, sid: str) -> str:
    from tokenward.store.redis import RedisClusterStore

    return RedisClusterStore(cluster.url, prefix=PREFIX).family_key(sid)


def _login_on(serve: Serve, cluster: LocalCluster, master: int) -> dict[str, str]:
    """Sign in until the session's family lives on ``master``."""
    for _ in range(200):
        body = serve.login("alice", client_id="web", scope="read")
        if _master_of(cluster, _family_key(cluster, body["session_id"])) == master:
            return body
    raise AssertionError("no session landed on the master")  # pragma: no cover


def test_a_master_killed_under_load_fails_closed_then_recovers(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster").start()
    serve = Serve(tmp_path, f"{cluster.url}?prefix={PREFIX}")
    load: Load | None = None
    try:
        serve.start()
        global_master = _master_of(cluster, f"{{{PREFIX}}}")
        victim = next(p for p in cluster.masters() if p != global_master)
        live = _login_on(serve, cluster, victim)
        doomed = _login_on(serve, cluster, victim)
        load = Load(serve, refreshers=2, sessions_each=3).start()
        time.sleep(1.0)
        with httpx.Client(base_url=serve.base, timeout=15) as http:
            r = http.post("/revoke", data={"token": doomed["refresh_token"], "client_id": "web"})
            assert r.status_code == 200, r.text  # acknowledged: a replica has it
            cluster.kill(victim)
            killed_at = time.monotonic()

            # the failed range: 503 until the replica is promoted, then 200, same server
            seen: list[int] = []
            while time.monotonic() - killed_at < RECOVERY_LIMIT:
                r = http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                              "refresh_token": live["refresh_token"]})  # fmt: skip
                seen.append(r.status_code)
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
                assert "access_token" not in r.text and int(r.headers["Retry-After"]) >= 1
                time.sleep(0.1)
            recovered = time.monotonic() - killed_at
            assert seen[-1] == 200, f"not recovered within {RECOVERY_LIMIT} s: {Counter(seen)}"
            assert seen[0] == 503, "the kill was not seen (the family is on the killed master)"

            # the load makes progress after the failover, then stops
            before = load.statuses[200]
            deadline = time.monotonic() + RECOVERY_LIMIT
            while load.statuses[200] <= before + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            load.stop()
            assert not load.errors, load.errors[:5]
            assert load.transport_errors == 0
            assert set(load.statuses) <= {200, 503}, load.statuses
            for s in load.sessions:  # every client continues with what it holds
                r = load.refresh(http, s)
                assert r.status_code == 200, f"{s.sid}: {r.text}"

            # nothing acknowledged is lost
            r = http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                          "refresh_token": doomed["refresh_token"]})  # fmt: skip
            assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
            assert http.post("/introspect", data={"token": doomed["access_token"]},
                             auth=serve.svc_auth).json() == {"active": False}  # fmt: skip
            for ack in load.acks:
                u = http.get("/userinfo", headers={"Authorization": f"Bearer {ack.at}"})
                assert u.status_code == 401, f"acknowledged {ack.kind} revocation lost"
                i = http.post("/introspect", data={"token": ack.token}, auth=serve.svc_auth)
                assert i.json() == {"active": False}
            # the replica took over the range, and sign-in lands there again
            promoted = _master_of(cluster, _family_key(cluster, doomed["session_id"]))
            assert promoted != victim
            _login_on(serve, cluster, promoted)
        print(
            f"\nfailover: 503 x{seen.count(503)}, recovered {recovered:.1f} s after the kill; "
            f"load {dict(load.statuses)}, {len(load.acks)} acknowledged revocations"
        )
    finally:
        if load is not None:
            load.stop()  # idempotent
        serve.stop()
        cluster.stop()

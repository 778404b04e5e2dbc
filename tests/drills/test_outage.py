"""Outage drill: a loopback fault proxy between a ``tokenward serve`` subprocess and its
Redis / PostgreSQL; under a steady mix of logins, refreshes and revocations the proxy first
goes silent (pause: a timeout), is restored, then is cut (connections reset, new ones
refused), and restored again — without restarting the server. Checks:

* fail closed during the outage: ``/token`` answers 503 + ``Retry-After`` and no token,
  ``/revoke`` 503 + ``Retry-After``, ``/introspect`` never ``active: true``, never a 500;
* no hung request: every answer, also during the outage, within a bound;
* full recovery without restart: every client continues with the refresh token it holds;
* nothing acknowledged is lost: every revocation answered 200 is in force afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from support.faultproxy import FaultProxy
from support.live import Serve, make_backend
from support.load import Load
from support.stores import POSTGRES_HOST, POSTGRES_PORT, REDIS_HOST, REDIS_PORT

# serial: wall-clock bounds (outage, restart, propagation) that parallel files would stretch
pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.serial]

ADDRESSES = {"redis": (REDIS_HOST, REDIS_PORT), "postgres": (POSTGRES_HOST, POSTGRES_PORT)}
OUTAGE = 2.0  # seconds each fault lasts
# behaviour, not speed (docs/security.md: "every answer within 8 s"): no request hangs; the
# store bounds every call by its 2 s timeout (observed ≤ 2.1 s)
BOUND = 8.0


def _probe_outage(http: httpx.Client, serve: Serve, live_at: str, live_rt: str) -> list[int]:
    """What a client sees while the store is down (the probes run in parallel, so that the
    outage stays shorter than the grace window even when each probe waits the store timeout)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(f, http, serve, live_at, live_rt) for f in _PROBES]
        return [s for j in jobs for s in j.result()]


def _probe_token(http: httpx.Client, serve: Serve, live_at: str, live_rt: str) -> list[int]:
    seen: list[int] = []
    r = http.post("/token", data={"grant_type": "password", "username": "alice",
                                  "password": "correct horse battery staple",
                                  "client_id": "web"})  # fmt: skip
    assert r.status_code == 503 and "access_token" not in r.text, r.text
    assert int(r.headers["Retry-After"]) >= 1
    seen.append(r.status_code)
    r = http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                  "refresh_token": live_rt})  # fmt: skip
    assert r.status_code == 503 and "access_token" not in r.text, r.text
    seen.append(r.status_code)
    return seen


def _probe_revoke(http: httpx.Client, serve: Serve, live_at: str, live_rt: str) -> list[int]:
    r = http.post("/revoke", data={"token": live_rt, "client_id": "web"})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
    return [r.status_code]


def _probe_introspect(http: httpx.Client, serve: Serve, live_at: str, live_rt: str) -> list[int]:
    seen: list[int] = []
    for token in (live_at, live_rt):
        r = http.post("/introspect", data={"token": token}, auth=serve.svc_auth)
        assert r.status_code in (200, 503), r.text
        assert r.status_code == 503 or r.json() == {"active": False}
        seen.append(r.status_code)
    return seen


_PROBES = (_probe_token, _probe_revoke, _probe_introspect)


@pytest.mark.parametrize("backend_name", ["redis", "postgres"])
def test_cut_and_restore_under_load(backend_name: str, tmp_path: Path) -> None:
    host, port = ADDRESSES[backend_name]
    with FaultProxy(port, target_host=host) as proxy:
        backend = make_backend(backend_name, tmp_path, redis_db=13, port=proxy.port)
        serve = Serve(tmp_path, backend.url)
        try:
            serve.start()
            probe = serve.login("alice", client_id="web", scope="read")
            load = Load(serve, refreshers=3, sessions_each=2).start()
            outage_statuses: list[int] = []
            with httpx.Client(base_url=serve.base, timeout=BOUND + 5) as http:
                for fault in (proxy.pause, proxy.cut):
                    time.sleep(1.0)
                    before = load.statuses[200]
                    fault()
                    time.sleep(0.3)  # let the in-flight requests meet the fault
                    t0 = time.monotonic()
                    outage_statuses += _probe_outage(
                        http, serve, probe["access_token"], probe["refresh_token"]
                    )
                    time.sleep(max(0.0, OUTAGE - (time.monotonic() - t0)))
                    proxy.restore()
                    assert load.statuses[503] > 0
                    # recovery without restart: the load makes progress again
                    deadline = time.monotonic() + 15
                    while load.statuses[200] <= before + 20 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert load.statuses[200] > before + 20, "no recovery after restore"
                time.sleep(0.5)
                load.stop()
                assert not load.errors, load.errors[:5]
                assert load.transport_errors == 0, "a request hung or the connection broke"
                assert max(load.latencies) < BOUND, f"slowest answer {max(load.latencies):.1f} s"
                assert set(load.statuses) <= {200, 503}, load.statuses
                # every client continues with what it holds (a 503 never rotated anything)
                for s in load.sessions:
                    r = load.refresh(http, s)
                    assert r.status_code == 200, f"{s.sid}: {r.text}"
                # nothing acknowledged was lost
                for ack in load.acks:
                    u = http.get("/userinfo", headers={"Authorization": f"Bearer {ack.at}"})
                    assert u.status_code == 401, f"acknowledged {ack.kind} revocation lost"
                    i = http.post("/introspect", data={"token": ack.token}, auth=serve.svc_auth)
                    assert i.json() == {"active": False}
                # the probe session was never revoked by the 503 answers
                r = http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                              "refresh_token": probe["refresh_token"]})  # fmt: skip
                assert r.status_code == 200, r.text
            print(
                f"\n{backend_name}: statuses {dict(load.statuses)}, {len(load.acks)} acks, "
                f"slowest {max(load.latencies) * 1000:.0f} ms, probes {outage_statuses}"
            )
        finally:
            serve.stop()
            backend.cleanup()

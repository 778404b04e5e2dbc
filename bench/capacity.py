"""Store round trips and server CPU per operation, per backend: the inputs of docs/capacity.md.

The app runs in-process (``httpx.ASGITransport``, no sockets) with its default settings
(argon2id 19 MiB / t=2, the risk engine on, ES256) except the login budgets (raised: the bench
signs in many times) and the access log (off). For each backend (memory, SQLite file,
PostgreSQL, Redis, Redis Cluster of 3 masters + 3 replicas started here) and each operation:

* sign-in   ``POST /token grant_type=password`` (public client)
* refresh   ``POST /token grant_type=refresh_token`` (rotation + reuse detection)
* revoke    ``POST /revoke`` of a refresh token (the session: family + feed event)
* introspect ``POST /introspect`` of an access token (confidential client, HTTP Basic)

it reports, per operation (mean over ``--n``):

* store round trips: Redis commands or pipelines sent (a counting wrapper around redis-py's
  ``send_packed_command``: one send is one round trip); SQL statements + BEGIN/COMMIT/ROLLBACK
  (SQLAlchemy ``before_cursor_execute``/``begin``/``commit``/``rollback`` events; on SQLite these
  are calls on the aiosqlite thread, not network round trips);
* server CPU: process time (user + system) per request in this process, minus the same
  in-process HTTP round trip to a bare ASGI endpoint (the client's share and the transport);
* Redis server CPU: ``used_cpu_user + used_cpu_sys`` of the Redis process(es) per operation
  (the cluster: the sum over the 6 nodes, replication included; the single Redis is shared
  with other users of the machine, so its figure is indicative).

And the memory of one session in Redis (``MEMORY USAGE`` of its keys, after 0 and 8 refreshes).
The feed follower runs in the background (a blocking read about once a second, a sweep of the
16 outboxes): it adds a few round trips per second to every figure, included.

    .venv/bin/python bench/capacity.py [--n 200] [--backends memory,sqlite,redis,...]

``redis-cluster-nowait`` is the cluster with ``?wait_replicas=0``: the cost of waiting for a
replica before acknowledging a revocation is its revoke row against ``redis-cluster``'s (wall
time per revocation, one at a time); ``--wait-cost`` measures it at the store level alone
(``revoke_family`` with ``wait_replicas`` 0 and 1, interleaved, on one local cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tokenward.server import create_app  # noqa: E402
from tokenward.server.settings import Settings  # noqa: E402

PASSWORD = "capacity bench password"
ISSUER = "https://capacity.tokenward.test"
POSTGRES_URL = os.environ.get(
    "TOKENWARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOKENWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OPS = ("sign-in", "refresh", "revoke", "introspect")
REFRESHES_PER_SESSION = 8  # under the risk engine's refresh-velocity limit (20 / 5 min)


class Counter:
    """Round trips to the store, counted by patching the drivers once."""

    def __init__(self) -> None:
        self.n = 0
        self.trace: list[str] | None = None  # what each round trip sent, while tracing
        from redis.asyncio.connection import AbstractConnection

        original = AbstractConnection.send_packed_command
        counter = self

        async def counting(self: Any, command: Any, check_health: bool = True) -> None:
            counter.n += 1
            if counter.trace is not None:
                counter.trace.append(_names(command))
            await original(self, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]

        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def bump(*args: Any, **__: Any) -> None:
            counter.n += 1
            if counter.trace is not None:
                sql = next((a for a in args if isinstance(a, str)), "")
                counter.trace.append(sql.split()[0] if sql else "BEGIN/COMMIT")

        for name in ("before_cursor_execute", "begin", "commit", "rollback"):
            event.listen(Engine, name, bump)
        self._bump = bump

    def watch_lanes(self, store: Any) -> None:
        """SQLite's hot paths run on raw ``sqlite3`` lanes, outside SQLAlchemy's events: count
        their statements (BEGIN/COMMIT included) through the lanes' statement hook."""
        for attr in ("_rotate_lane", "_read_lane"):
            lane = getattr(store, attr, None)
            if lane is not None:
                lane.on_statement = self._bump


COUNTER: Counter | None = None
TRACE = False
TW_NODE: int | None = None  # on a cluster: the index (in the CPU list) of the {tw} master


def _names(packed: Any) -> str:
    """The command names in a packed Redis request (a pipeline: several, joined by +)."""
    blob = b"".join(p if isinstance(p, bytes) else bytes(p) for p in packed)
    names: list[str] = []
    for request in blob.split(b"\r\n*")[0:]:
        parts = request.split(b"\r\n")
        if len(parts) > 2 and parts[1].startswith(b"$"):
            name = parts[2].decode(errors="replace").upper()
            if not name.isalpha():
                continue
            # the hash tag of its first key: the global slot ({tw}) or a shard ({tw:s<n>})
            args = parts[4::2]
            key = args[2] if name.startswith("EVAL") and len(args) > 2 else args[0] if args else b""
            tag = re.search(rb"\{[^}]*\}", key)
            names.append(name + (tag.group().decode() if tag else ""))
    return "+".join(names) or "?"


async def floor_cpu(n: int) -> float:
    """Process time of one in-process HTTP round trip to a bare ASGI endpoint."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url=ISSUER) as c:
        for _ in range(50):
            await c.post("/x", data={"a": "b"})
        t0 = time.process_time()
        for _ in range(n):
            await c.post("/x", data={"a": "b"})
        return (time.process_time() - t0) / n


@contextlib.asynccontextmanager
async def backend(name: str, tmp: Path) -> AsyncIterator[tuple[str, Callable[[], list[float]]]]:
    """The store URL of an isolated backend, and a reader of its Redis server CPU seconds."""
    nothing: Callable[[], list[float]] = lambda: [0.0]  # noqa: E731
    if name == "memory":
        yield "memory://", nothing
    elif name == "sqlite":
        yield f"sqlite:///{tmp / 'tw.db'}", nothing
    elif name == "postgres":
        from support.stores import drop_postgres_schema

        schema = f"tw_cap_{uuid.uuid4().hex[:8]}"
        try:
            yield f"{POSTGRES_URL}?schema={schema}", nothing
        finally:
            drop_postgres_schema(schema)
    elif name == "redis":
        import redis

        from support.stores import delete_redis_prefix

        prefix = f"twcap{uuid.uuid4().hex[:8]}"
        client = redis.Redis.from_url(REDIS_URL)

        def cpu() -> list[float]:
            info = client.info("cpu")
            return [float(info["used_cpu_user"]) + float(info["used_cpu_sys"])]

        try:
            yield f"{REDIS_URL}?prefix={prefix}", cpu
        finally:
            delete_redis_prefix(prefix)
            client.close()
    else:  # redis-cluster, redis-cluster-nowait
        import redis

        from support.redis_cluster import LocalCluster

        cluster = LocalCluster(tmp / "cluster").start()
        clients = [redis.Redis(port=p) for p in cluster.ports]

        def cpu() -> list[float]:  # per node
            infos = [c.info("cpu") for c in clients]
            return [float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos]

        global TW_NODE
        slot = int(clients[0].execute_command("CLUSTER", "KEYSLOT", "{tw}"))
        for start, end, master, *_ in clients[0].execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                TW_NODE = list(cluster.ports).index(int(master[1]))
        try:
            wait = "&wait_replicas=0" if name.endswith("nowait") else ""
            yield f"{cluster.url}?prefix=twcap{wait}", cpu
        finally:
            for c in clients:
                c.close()
            cluster.stop()
            TW_NODE = None


async def measure(name: str, n: int, floor: float) -> dict[str, Any]:
    assert COUNTER is not None
    with tempfile.TemporaryDirectory() as tmp_dir:
        async with backend(name, Path(tmp_dir)) as (url, redis_cpu):
            settings = Settings(
                store_url=url,
                issuer=ISSUER,
                admin_password=PASSWORD,
                login_limit_per_account="1000000/minute",
                login_limit_per_account_ceiling="1000000/minute",
                login_limit_per_ip="1000000/minute",
                access_log=False,  # not configured here: it would go through structlog's console
                key_encryption_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
            app = create_app(settings)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=ISSUER, timeout=60
                ) as http,
            ):
                COUNTER.watch_lanes(app.state.runtime.store)
                secret = await provision(http)
                return await run_ops(http, name, n, floor, secret, redis_cpu, app)


async def provision(http: httpx.AsyncClient) -> str:
    admin = {"username": "admin", "password": PASSWORD, "client_id": "tokenward-console"}
    r = await http.post("/login", json={**admin, "scope": "admin"})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    for path, body in (
        ("/admin/resources", {"identifier": "api", "name": "API", "scopes": ["read"],
                              "default_scopes": ["read"]}),
        ("/admin/roles", {"name": "member", "scopes": ["read"]}),
        ("/admin/users", {"username": "alice", "password": PASSWORD, "roles": ["member"]}),
        ("/admin/clients", {"client_id": "app", "public": True,
                            "grants": ["password", "refresh_token"], "resources": ["api"],
                            "scopes": ["read"]}),
        ("/admin/clients", {"client_id": "rs", "grants": ["client_credentials"]}),
    ):  # fmt: skip
        r = await http.post(path, json=body, headers=auth)
        assert r.status_code == 201, r.text
    return str(r.json()["client_secret"])


async def run_ops(
    http: httpx.AsyncClient,
    name: str,
    n: int,
    floor: float,
    secret: str,
    redis_cpu: Callable[[], list[float]],
    app: Any,
) -> dict[str, Any]:
    assert COUNTER is not None
    signin = {"grant_type": "password", "username": "alice", "password": PASSWORD,
              "client_id": "app"}  # fmt: skip
    sessions = max(4, n // REFRESHES_PER_SESSION)
    held: list[dict[str, Any]] = []
    out: dict[str, Any] = {}

    async def timed(op: str, calls: list[Callable[[], Awaitable[httpx.Response]]]) -> None:
        traced = calls[-1] if TRACE else None
        calls = calls[:-1] if TRACE else calls
        rt0, cpu0, rcpu0, wall0 = COUNTER.n, time.process_time(), redis_cpu(), time.perf_counter()
        for call in calls:
            r = await call()
            assert r.status_code == 200, f"{name} {op}: {r.status_code} {r.text}"
            if op == "sign-in":
                held.append(r.json())
        k = len(calls)
        out[op] = {
            "round_trips": (COUNTER.n - rt0) / k,
            "cpu_ms": max(0.0, (time.process_time() - cpu0) / k - floor) * 1000,
            "redis_cpu_ms": sum(deltas := [b - a for a, b in zip(rcpu0, redis_cpu(), strict=True)])
            / k
            * 1000,
            "busiest_node_cpu_ms": max(deltas) / k * 1000,
            "tw_node_cpu_ms": None if TW_NODE is None else deltas[TW_NODE] / k * 1000,
            "node_cpu_ms": [d / k * 1000 for d in deltas],
            "tw_node": TW_NODE,
            "wall_ms": (time.perf_counter() - wall0) / k * 1000,
        }
        if traced is not None:  # one more operation, its round trips named (not in the figures)
            COUNTER.trace = []
            r = await traced()
            print(f"  {name} {op}: {len(COUNTER.trace)} round trips: {' '.join(COUNTER.trace)}")
            COUNTER.trace = None
            if op == "sign-in":
                held.append(r.json())

    await http.post("/token", data=signin)  # warm-up (caches, connections)
    await timed("sign-in", [lambda: http.post("/token", data=signin)] * sessions)

    def refresher(i: int) -> Callable[[], Awaitable[httpx.Response]]:
        async def call() -> httpx.Response:
            s = held[i % len(held)]
            r = await http.post("/token", data={"grant_type": "refresh_token", "client_id": "app",
                                                "refresh_token": s["refresh_token"]})  # fmt: skip
            if r.status_code == 200:
                s.update(r.json())
            return r

        return call

    await timed("refresh", [refresher(i) for i in range(sessions * REFRESHES_PER_SESSION)])
    access = [s["access_token"] for s in held]

    def introspector(token: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.post("/introspect", data={"token": token}, auth=("rs", secret))

    def revoker(token: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.post("/revoke", data={"token": token, "client_id": "app"})

    await timed("introspect", [introspector(access[i % len(access)]) for i in range(n)])
    if name.startswith("redis"):
        out["memory"] = await session_memory(app, held)
    await timed("revoke", [revoker(s["refresh_token"]) for s in held])
    return out


async def session_memory(app: Any, held: list[dict[str, Any]]) -> dict[str, float]:
    """Bytes of one session in Redis (``MEMORY USAGE``): its family hash, its token records
    (after ``REFRESHES_PER_SESSION`` rotations) and its entries in the shard's purge index and
    the subject index (each index's usage over its size)."""
    store = app.state.runtime.store
    r = store._r
    # a refresh token names its family: twr_<sid>.<secret>
    sids = [s["refresh_token"].split("_", 1)[1].split(".", 1)[0] for s in held]
    fam = [int(await r.memory_usage(store.family_key(sid)) or 0) for sid in sids]
    tok = [int(await r.memory_usage(store.tokens_key(sid)) or 0) for sid in sids]
    from tokenward.store.redis.store import shard_of

    dl = store.deadline_key(shard_of(sids[0]))
    per_deadline = int(await r.memory_usage(dl) or 0) / max(1, int(await r.zcard(dl)))
    return {
        "family": sum(fam) / len(fam),
        "tokens_after_rotations": sum(tok) / len(tok),
        "index_entry": per_deadline,
    }


async def wait_cost(n: int) -> None:
    """``revoke_family`` on a local cluster with ``wait_replicas`` 0 and 1, interleaved, same
    cluster and run: the store-level cost of acknowledging a revocation only after ``WAIT``."""
    import hashlib
    import statistics

    from support.redis_cluster import LocalCluster
    from tokenward.store.base import Family, RefreshTokenRecord
    from tokenward.store.redis import RedisClusterStore

    now = 1_800_000_000.0
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp)).start()
        try:
            stores = {w: RedisClusterStore(cluster.url, prefix=f"wc{w}", wait_replicas=w)
                      for w in (0, 1)}  # fmt: skip
            times: dict[int, list[float]] = {0: [], 1: []}
            for store in stores.values():
                await store.open()
            for i in range(n):
                for w, store in stores.items():
                    sid = f"s{i}"
                    fam = Family(sid=sid, sub="a", client_id="c", scope="r", created_at=now,
                                 last_used_at=now, expires_at=now + 1000,
                                 idle_expires_at=now + 100,
                                 current_hash=hashlib.sha256(sid.encode()).digest())  # fmt: skip
                    await store.create_family(fam, RefreshTokenRecord(fam.current_hash, sid, now))
                    t0 = time.perf_counter()
                    await store.revoke_family(sid, now=now, reason="bench", until=now + 60)
                    times[w].append(time.perf_counter() - t0)
            for store in stores.values():
                await store.close()
        finally:
            cluster.stop()
    for w, ts in times.items():
        ts.sort()
        print(
            f"revoke_family, wait_replicas={w}: median {statistics.median(ts) * 1000:.2f} ms,"
            f" p99 {ts[int(len(ts) * 0.99)] * 1000:.2f} ms ({n} revocations)"
        )


async def main() -> None:
    global COUNTER, TRACE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--wait-cost", action="store_true", help="only the store-level WAIT cost")
    ap.add_argument("--backends", default="memory,sqlite,postgres,redis,redis-cluster")
    ap.add_argument(
        "--trace",
        action="store_true",
        help="name the round trips of one op of each kind (the follower's, if any, too)",
    )
    args = ap.parse_args()
    TRACE = args.trace
    if args.wait_cost:
        await wait_cost(args.n)
        return
    COUNTER = Counter()
    import logging

    logging.disable(logging.INFO)  # the library's info records
    floor = await floor_cpu(500)
    print(f"floor (in-process HTTP round trip to a bare ASGI app): {floor * 1000:.3f} ms CPU")
    results: dict[str, dict[str, Any]] = {}
    for name in args.backends.split(","):
        results[name] = await measure(name, args.n, floor)
    print("\n| backend | " + " | ".join(f"{op}: round trips / CPU ms" for op in OPS) + " |")
    print("|---|" + "---|" * len(OPS))
    for name, res in results.items():
        cells = [f"{res[op]['round_trips']:.1f} / {res[op]['cpu_ms']:.2f}" for op in OPS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nwall ms per operation, one at a time (in-process, includes the floor):")
    for name, res in results.items():
        print(f"  {name}: " + ", ".join(f"{op} {res[op]['wall_ms']:.2f}" for op in OPS))
    print("\nRedis server CPU ms per operation (cluster: 6 nodes, replication included):")
    for name, res in results.items():
        if name.startswith("redis"):
            print(f"  {name}: " + ", ".join(f"{op} {res[op]['redis_cpu_ms']:.3f}" for op in OPS))
            busiest = ", ".join(f"{op} {res[op]['busiest_node_cpu_ms']:.3f}" for op in OPS)
            print(f"    busiest node: {busiest}")
            if res[OPS[0]]["tw_node_cpu_ms"] is not None:
                tw = ", ".join(f"{op} {res[op]['tw_node_cpu_ms']:.3f}" for op in OPS)
                print(f"    the {{tw}} master: {tw}")
                for op in OPS:
                    nodes = " ".join(f"{c:.3f}" for c in res[op]["node_cpu_ms"])
                    print(f"    {op} per node (the {{tw}} master: #{res[op]['tw_node']}): {nodes}")
    for name, res in results.items():
        if "memory" in res:
            m = res["memory"]
            print(
                f"\n{name}: one session = family hash {m['family']:.0f} B + token records after"
                f" {REFRESHES_PER_SESSION} rotations {m['tokens_after_rotations']:.0f} B +"
                f" ~{m['index_entry']:.0f} B per index entry (purge index; the subject index alike)"
            )


if __name__ == "__main__":
    asyncio.run(main())

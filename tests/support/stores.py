"""The ONE backend list, and the ``store`` / ``store_factory`` fixtures every store test uses.

``store_factory`` is parametrised over :data:`BACKENDS`; each test gets its own isolated
backend (a tmp-path SQLite file, a fresh PostgreSQL schema dropped afterwards, a unique Redis
key prefix deleted afterwards, a fresh memory store). Calling the factory again opens a
*second* store instance on the same data, the way a second server process would (for memory,
the same instance: it cannot be shared otherwise). ``store`` is the first instance.

A backend whose service is unreachable is skipped, unless ``TOKENWARD_REQUIRE_SERVICES=1``
(CI), which turns the skip into a failure (:mod:`support.env`). The fixtures are registered for
every test by ``tests/conftest.py``; tests that use them get the ``services`` marker there.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from support.env import service_missing
from tokenward.store import Store, store_from_url

BACKENDS = ["memory", "sqlite", "postgres", "redis"]
POSTGRES_URL = os.environ.get(
    "TOKENWARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOKENWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def address(url: str) -> tuple[str, int]:
    """The (host, port) a service URL points at (the default port of its scheme if none)."""
    parts = urlsplit(url)
    default = 6379 if parts.scheme.startswith("redis") else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


def rerouted(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` with its host and port replaced (to go through a fault proxy); user, path and
    query are kept."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}:{port}"))


REDIS_HOST, REDIS_PORT = address(REDIS_URL)
POSTGRES_HOST, POSTGRES_PORT = address(POSTGRES_URL)

# Generous per-call bound for the shared fixtures: the suite runs on 2 busy cores, often next to
# other suites; timeouts themselves are tested with explicit small values (test_sql.py).
SQL_TIMEOUT = 10.0
# Small pools: several suites may share one PostgreSQL (max_connections 100) at once.
POSTGRES_POOL = {"pool_size": 2, "max_overflow": 3}


@functools.cache
def postgres_problem() -> str | None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL unreachable at {POSTGRES_URL}: {type(exc).__name__}"
    return None


@functools.cache
def redis_problem() -> str | None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis unreachable at {REDIS_URL}: {type(exc).__name__}"
    return None


def drop_postgres_schema(schema: str) -> None:
    """Drop a test schema. Never waits forever: a connection left inside a transaction on
    that schema (a test that failed mid-way, its tasks still pending) would block DROP
    SCHEMA; after a short lock timeout those sessions are terminated and the drop retried."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '3s'")
        for _ in range(3):
            try:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                return
            except psycopg.errors.LockNotAvailable:
                conn.execute(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
                    " JOIN pg_class c ON c.oid = l.relation"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND l.pid <> pg_backend_pid()",
                    (schema,),
                )


def delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        batch = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def check_script_slots(store: Any) -> list[str]:
    """Make every Lua script call of a Redis ``store`` assert that all its KEYS map to one
    hash slot (what Redis Cluster requires); returns the list the names of the scripts run
    are appended to."""
    from redis.crc import key_slot

    ran: list[str] = []

    def checking(original: Any) -> Any:
        async def checked(name: str, keys: Any, args: Any) -> Any:
            slots = {key_slot(k.encode()) for k in keys}
            assert len(slots) == 1, f"script {name} touches slots {sorted(slots)}: {list(keys)}"
            ran.append(name)
            return await original(name, keys, args)

        return checked

    # the plain runner, and the one of revocations that waits for replicas (which runs the
    # script itself when it does wait)
    store._script = checking(store._script)
    store._replicated = checking(store._replicated)
    return ran


class StoreFactory:
    """Opens store instances on one isolated backend; closes them all at teardown."""

    def __init__(self, backend: str, url: str, options: dict[str, Any]) -> None:
        self.backend = backend
        self.url = url
        self.options = options
        self._opened: list[Store] = []
        self._shared: Store | None = None

    async def __call__(self, **overrides: Any) -> Store:
        if self.backend == "memory" and self._shared is not None:
            return self._shared
        store = store_from_url(self.url, **{**self.options, **overrides})
        if self.backend in ("redis", "redis-cluster"):
            check_script_slots(store)  # every script run by a store test: one hash slot
        await store.open()
        self._opened.append(store)
        if self.backend == "memory":
            self._shared = store
        return store

    async def aclose(self) -> None:
        for store in reversed(self._opened):
            await store.close()
        self._opened.clear()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real local Redis Cluster (3 masters + 3 replicas), started once per test session
    (a :class:`support.redis_cluster.LocalCluster`). A test may pause a node (and must resume
    it); a test that kills one starts its own cluster."""
    from support.redis_cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: Any) -> str:
    """The ``redis+cluster://`` URL of the session's local Redis Cluster."""
    url: str = redis_cluster.url
    return url


@pytest.fixture(params=BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    async for factory in open_store_factory(request.param, request, tmp_path):
        yield factory


async def open_store_factory(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """The isolated backend ``backend`` for one test (``redis-cluster``: a unique prefix on the
    session's local Redis Cluster)."""
    token = uuid.uuid4().hex[:12]
    cleanup: Any = None
    if backend == "memory":
        factory = StoreFactory(backend, "memory://", {})
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'tokenward.db'}"
        factory = StoreFactory(backend, url, {"timeout": SQL_TIMEOUT})
    elif backend == "postgres":
        if (problem := postgres_problem()) is not None:
            service_missing(problem)
        schema = f"tw_test_{token}"
        options = {"schema": schema, "timeout": SQL_TIMEOUT, **POSTGRES_POOL}
        factory = StoreFactory(backend, POSTGRES_URL, options)
        cleanup = functools.partial(drop_postgres_schema, schema)
    elif backend == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
        factory = StoreFactory(backend, url, {"prefix": f"twtest{token}"})
    else:
        if (problem := redis_problem()) is not None:
            service_missing(problem)
        prefix = f"twtest{token}"
        factory = StoreFactory(backend, REDIS_URL, {"prefix": prefix})
        cleanup = functools.partial(delete_redis_prefix, prefix)
    try:
        yield factory
    finally:
        await factory.aclose()
        if cleanup is not None:
            await asyncio.to_thread(cleanup)  # keep the loop running for any pending tasks


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()

"""Concurrency stress, as Ory Hydra does it: N workers released together by a barrier present
the same refresh token. Exactly one successor may exist; inside the grace window every racer
gets that same one. Repeated, on every backend of the shared fixture, through several store
instances (several connection pools, as several server processes would have), and on SQLite
with several OS processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
from collections.abc import Sequence
from pathlib import Path

import pytest

from support.stores import StoreFactory
from tokenward import FrozenClock, SessionManager, TokenPair
from tokenward.errors import InvalidGrant, RefreshTokenReused
from tokenward.events import add_listener
from tokenward.issuer import Issuer
from tokenward.sessions import hash_refresh_token, refresh_token_sid
from tokenward.store import Store, store_from_url
from tokenward.testing import TEST_AUDIENCE, TEST_ISSUER, throwaway_keyring

WORKERS = 50
ROUNDS = 5
INSTANCES = 3  # store instances (connection pools) the workers are spread over


def manager(store: Store, clock: FrozenClock, *, grace: float) -> SessionManager:
    issuer = Issuer(
        throwaway_keyring(clock=clock), issuer=TEST_ISSUER, audience=TEST_AUDIENCE, clock=clock
    )
    return SessionManager(issuer, store, grace_period=grace)


async def race(
    managers: Sequence[SessionManager], token: str, n: int = WORKERS
) -> list[TokenPair | InvalidGrant]:
    barrier = asyncio.Barrier(n)

    async def worker(i: int) -> TokenPair | InvalidGrant:
        await barrier.wait()
        try:
            return await managers[i % len(managers)].refresh(token, client_id="web")
        except InvalidGrant as exc:
            return exc

    # a TaskGroup, not gather: if one racer fails unexpectedly the others are cancelled and
    # awaited, so no abandoned task keeps a transaction (and its row locks) open
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(worker(i)) for i in range(n)]
    return [t.result() for t in tasks]


async def instances(store_factory: StoreFactory) -> list[Store]:
    # small SQL pools: several test runs may share one PostgreSQL (max_connections)
    small = {"pool_size": 4, "max_overflow": 0, "timeout": 10.0}
    options = small if store_factory.backend in ("sqlite", "postgres") else {}
    return [await store_factory(**options) for _ in range(INSTANCES)]


async def test_racers_inside_the_grace_window_share_one_successor(
    store_factory: StoreFactory,
    clock: FrozenClock,
) -> None:
    stores = await instances(store_factory)
    managers = [manager(s, clock, grace=10) for s in stores]
    outcomes: list[str] = []
    remove = add_listener(lambda name, _fields: outcomes.append(name))
    try:
        for _ in range(ROUNDS):
            outcomes.clear()
            pair = await managers[0].start(sub="alice", client_id="web")
            results = await race(managers, pair.refresh_token)
            errors = [r for r in results if not isinstance(r, TokenPair)]
            assert errors == []
            pairs = [r for r in results if isinstance(r, TokenPair)]
            successors = {p.refresh_token for p in pairs}
            assert len(successors) == 1, "a second branch was created"
            assert len({p.access_token for p in pairs}) == WORKERS  # each got a fresh one
            assert outcomes.count("refreshed") == 1
            assert outcomes.count("grace_replay") == WORKERS - 1
            (successor,) = successors
            family = await stores[0].get_family(pair.session_id)
            assert family is not None and not family.revoked and family.generation == 1
            assert family.current_hash == hash_refresh_token(successor)
            parent = await stores[0].get_refresh_token(
                hash_refresh_token(pair.refresh_token), sid=refresh_token_sid(pair.refresh_token)
            )
            assert parent is not None and parent[0].successor_hash == family.current_hash
            # the one successor carries on normally
            nxt = await managers[1].refresh(successor, client_id="web")
            assert nxt.session_id == pair.session_id
            clock.advance(60)
    finally:
        remove()


async def test_without_grace_exactly_one_racer_wins(
    store_factory: StoreFactory,
    clock: FrozenClock,
) -> None:
    stores = await instances(store_factory)
    managers = [manager(s, clock, grace=0) for s in stores]
    for _ in range(ROUNDS):
        pair = await managers[0].start(sub="alice", client_id="web")
        results = await race(managers, pair.refresh_token)
        winners = [r for r in results if isinstance(r, TokenPair)]
        assert len(winners) == 1
        assert any(isinstance(r, RefreshTokenReused) for r in results)
        # strict rotation: the replays are reuse, so the family is revoked...
        family = await stores[0].get_family(pair.session_id)
        assert family is not None and family.revoked
        # ...and it has exactly one successor, whose record is the only child
        parent = await stores[0].get_refresh_token(
            hash_refresh_token(pair.refresh_token), sid=refresh_token_sid(pair.refresh_token)
        )
        assert parent is not None
        assert parent[0].successor_hash == hash_refresh_token(winners[0].refresh_token)
        assert family.generation == 1
        clock.advance(60)


# -- several OS processes on one SQLite file ----------------------------------------------

PROCESSES = 5
PER_PROCESS = 10
# the store timeout of the racing processes: the writers queue on SQLite's one write lock, and
# on a loaded machine the last may wait longer than the 2 s default; the race's outcome does
# not depend on how long it waits
RACE_TIMEOUT = 60.0


def _process_worker(
    url: str,
    tokens: list[str],
    now: float,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[tuple[int, list[str]]],
) -> None:
    async def main() -> None:
        clock = FrozenClock(now)
        store = store_from_url(url, timeout=RACE_TIMEOUT)
        async with store:
            mgr = manager(store, clock, grace=10)
            for rnd, token in enumerate(tokens):
                await asyncio.to_thread(barrier.wait, 60)

                async def one(tok: str = token) -> str:
                    try:
                        return (await mgr.refresh(tok, client_id="web")).refresh_token
                    except InvalidGrant as exc:
                        return f"error:{type(exc).__name__}"

                got = await asyncio.gather(*(one() for _ in range(PER_PROCESS)))
                results.put((rnd, list(got)))

    asyncio.run(main())


@pytest.mark.slow
async def test_sqlite_several_processes(tmp_path: Path, clock: FrozenClock) -> None:
    url = f"sqlite:///{tmp_path / 'stress.db'}"
    store = store_from_url(url, timeout=RACE_TIMEOUT)
    async with store:
        mgr = manager(store, clock, grace=10)
        pairs = [await mgr.start(sub=f"u{i}", client_id="web") for i in range(ROUNDS)]
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(PROCESSES)
        queue: multiprocessing.Queue[tuple[int, list[str]]] = ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_worker,
                args=(url, [p.refresh_token for p in pairs], clock.now(), barrier, queue),
            )
            for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        try:
            collected: dict[int, list[str]] = {r: [] for r in range(ROUNDS)}
            for _ in range(PROCESSES * ROUNDS):
                rnd, got = await asyncio.to_thread(queue.get, True, 120)
                collected[rnd].extend(got)
        finally:
            for p in procs:
                await asyncio.to_thread(p.join, 30)
        assert all(p.exitcode == 0 for p in procs)
        for rnd, pair in enumerate(pairs):
            got = collected[rnd]
            assert len(got) == PROCESSES * PER_PROCESS
            assert len(set(got)) == 1, f"round {rnd}: {sorted(set(got))[:3]}"
            assert not got[0].startswith("error:")
            assert got[0] == await mgr.successor_of(pair.refresh_token)
            family = await store.get_family(pair.session_id)
            assert family is not None and family.generation == 1 and not family.revoked

"""Three ``tokenward serve`` processes sharing one Redis, one Redis Cluster, then one PostgreSQL.

Each backend gets its own namespace (a Redis key prefix through ``TOKENWARD_STORE_PREFIX``, a
PostgreSQL schema through ``?schema=`` in the store URL), one key-encryption key for the three
instances, and a user and two clients created with the CLI before the servers start. The three
servers start at the same time and must agree on the signing keys (one JWKS).

* Log in at A, revoke the session at B: C's ``/introspect`` says
  ``{"active": false}``, C's ``/userinfo`` refuses the access token (C's mirror followed the
  store's feed), and so does a local :class:`tokenward.Verifier` fed by a
  :class:`~tokenward.revocation.DenylistFollower` on the same store. Polled with a generous
  deadline (a liveness wait; the propagation latency is measured in ``bench/propagation.py``).
* Refresh at A, replay the parent at C inside the grace window: the same successor. Replay it
  at B after the window: reuse, the family is revoked, at every instance and the local verifier.
* 50 refreshes of one refresh token at once, spread over the three instances: one successor,
  which all 50 get.

The servers are separate processes on the real clock, so the grace window here is real time
(``GRACE`` seconds): the one place in the suite where a test waits for it to pass.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from support.env import service_missing
from support.serve import Served, launch, run_cli
from support.stores import (
    POSTGRES_URL,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    postgres_problem,
    redis_problem,
)
from support.wait import LIVENESS
from tokenward import Verifier
from tokenward.errors import RevokedToken
from tokenward.revocation import Denylist, DenylistFollower
from tokenward.store import Store, store_from_url

# serial: not for a bound on speed but for the real-time grace window (GRACE) that the replay
# and the 50-way race must fall inside; parallel files on two cores could push them out of it
pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.serial]

ISSUER = "https://auth.multi.test"  # one issuer for the three instances
PASSWORD = "multi instance pw"
# seconds; real time (see the module docstring): room for the 50-way race and for the replay
# inside the window (both preconditions, checked)
GRACE = 4.0
STARTUP_LIMIT = 30.0


@dataclass
class Cluster:
    backend: str
    env: dict[str, str]
    store_url: str
    store_options: dict[str, Any]
    bases: list[str] = field(default_factory=list)
    rs_secret: str = ""

    @property
    def rs_auth(self) -> tuple[str, str]:
        return ("rs", self.rs_secret)

    def open_store(self) -> Store:
        return store_from_url(self.store_url, **self.store_options)


def _start_all(settings: dict[str, str], n: int) -> list[Served]:
    """Start ``n`` servers at once and wait until every one answers ``/healthz`` with 200."""
    servers = [launch(settings) for _ in range(n)]
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        pending = set(range(n))
        while pending and time.monotonic() < deadline:
            pending -= {i for i in pending if servers[i].ready()}
            time.sleep(0.05)
        if pending:
            pytest.fail(f"servers {sorted(pending)} did not answer within {STARTUP_LIMIT} s")
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


@pytest.fixture(scope="module", params=["redis", "redis-cluster", "postgres"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    backend: str = request.param
    token = uuid.uuid4().hex[:12]
    env: dict[str, str] = {}  # the only TOKENWARD_* settings the CLI and servers see
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env.update(
        TOKENWARD_KEY_ENCRYPTION_KEY=kek,
        TOKENWARD_ISSUER=ISSUER,
        TOKENWARD_REFRESH_GRACE_SECONDS=str(GRACE),
        TOKENWARD_LOG_JSON="true",
        # cheap argon2id: the test is about propagation, not hashing cost
        TOKENWARD_PASSWORD_MEMORY_COST="1024",
        TOKENWARD_PASSWORD_TIME_COST="1",
    )
    cleanup: Callable[[], None]
    if backend == "redis":
        if (problem := redis_problem()) is not None:
            service_missing(problem)
        prefix = f"twmulti{token}"
        url, options = REDIS_URL, {"prefix": prefix}
        env.update(TOKENWARD_STORE_URL=url, TOKENWARD_STORE_PREFIX=prefix)
        cleanup = functools.partial(delete_redis_prefix, prefix)
    elif backend == "redis-cluster":  # the session's local cluster (3 masters + 3 replicas)
        prefix = f"twmulti{token}"
        url, options = request.getfixturevalue("redis_cluster_url"), {"prefix": prefix}
        env.update(TOKENWARD_STORE_URL=url, TOKENWARD_STORE_PREFIX=prefix)
        cleanup = functools.partial(_drop_store, url, options)
    else:
        if (problem := postgres_problem()) is not None:
            service_missing(problem)
        schema = f"tw_multi_{token}"
        url, options = f"{POSTGRES_URL}?schema={schema}", {}
        env.update(TOKENWARD_STORE_URL=url)
        cleanup = functools.partial(drop_postgres_schema, schema)
    cluster = Cluster(backend, env, url, options)
    servers: list[Served] = []
    try:
        # the API the tokens are for (the default resource "api"), a role holding its scope
        run_cli(env, "resource", "add", "api", "--name", "API", "--scopes", "read",
                "--default-scopes", "read")  # fmt: skip
        run_cli(env, "role", "add", "member", "--scopes", "read")
        run_cli(env, "user", "add", "alice", "--password-stdin", "--roles", "member",
                stdin=PASSWORD + "\n")  # fmt: skip
        run_cli(env, "client", "add", "app", "--public", "--grants", "password,refresh_token",
                "--resources", "api", "--scopes", "read")  # fmt: skip
        out = run_cli(env, "client", "add", "rs", "--grants", "client_credentials")
        cluster.rs_secret = out.split("client_secret:", 1)[1].split()[0]
        servers = _start_all(env, 3)
        cluster.bases = [s.base for s in servers]
        yield cluster
    finally:
        for served in servers:
            served.stop()
        cleanup()


def _drop_store(url: str, options: dict[str, Any]) -> None:
    async def drop() -> None:
        store = store_from_url(url, **options)
        await store.open()
        try:
            await store.drop()  # type: ignore[attr-defined]
        finally:
            await store.close()

    asyncio.run(drop())


# -- helpers ---------------------------------------------------------------------------------
async def _login(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    r = await http.post(
        f"{base}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": "app",
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _refresh(http: httpx.AsyncClient, base: str, refresh_token: str) -> httpx.Response:
    return await http.post(
        f"{base}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "app"},
    )


async def _introspect(http: httpx.AsyncClient, c: Cluster, base: str, token: str) -> Any:
    r = await http.post(f"{base}/introspect", data={"token": token}, auth=c.rs_auth)
    assert r.status_code == 200, r.text
    return r.json()


async def _userinfo_status(http: httpx.AsyncClient, base: str, token: str) -> int:
    r = await http.get(f"{base}/userinfo", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def _rejects(verifier: Verifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except RevokedToken:
        return True
    return False


async def _within(bound: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails past ``bound`` (a liveness
    wait, not a latency bound)."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > bound:
            pytest.fail(f"not propagated within {bound} s")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def _local_verifier(c: Cluster, http: httpx.AsyncClient) -> Any:
    """A library :class:`Verifier` (keys from the cluster's JWKS) whose revocation check is a
    :class:`Denylist` that a :class:`DenylistFollower` keeps in sync with the shared store."""
    jwks = (await http.get(f"{c.bases[0]}/.well-known/jwks.json")).json()
    store = c.open_store()
    await store.open()
    denylist = Denylist()
    follower = DenylistFollower(store, denylist, wait_timeout=5.0)
    await follower.step()  # the snapshot, before any revocation of this test
    follower.start()
    try:
        yield Verifier(jwks, issuer=ISSUER, audience="api", revocation=denylist)
    finally:
        await follower.stop()
        await store.close()


# -- the tests -------------------------------------------------------------------------------
async def test_instances_started_together_share_keys(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        sets = [(await http.get(f"{b}/.well-known/jwks.json")).json() for b in cluster.bases]
        assert sets[0]["keys"], "no published key"
        assert sets[1] == sets[0] and sets[2] == sets[0]
        # and a token minted at one instance is accepted at the others
        tok = await _login(http, cluster.bases[0])
        for base in cluster.bases:
            assert await _userinfo_status(http, base, tok["access_token"]) == 200


async def test_session_revoked_at_b_is_rejected_at_c_and_by_a_local_verifier(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.bases
    async with httpx.AsyncClient(timeout=10) as http, _local_verifier(cluster, http) as local:
        tok = await _login(http, a)
        access = tok["access_token"]
        assert (await _introspect(http, cluster, c, access))["active"] is True
        assert await _userinfo_status(http, c, access) == 200
        assert local.verify(access).sub == "alice"

        r = await http.post(f"{b}/revoke", data={"token": tok["refresh_token"], "client_id": "app"})
        assert r.status_code == 200, r.text

        async def everywhere() -> bool:
            info = await _introspect(http, cluster, c, access)
            return (
                info == {"active": False}
                and await _userinfo_status(http, c, access) == 401
                and _rejects(local, access)
            )

        took = await _within(LIVENESS, everywhere)
        print(f"\n{cluster.backend}: session revocation at B seen at C and locally in {took:.3f} s")
        # the revoking instance and the login instance agree
        for base in (a, b):
            assert await _introspect(http, cluster, base, access) == {"active": False}
        refused = await _refresh(http, c, tok["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


async def test_grace_replay_across_instances_then_reuse_revokes_everywhere(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.bases
    async with httpx.AsyncClient(timeout=10) as http, _local_verifier(cluster, http) as local:
        first = await _login(http, a)
        parent = first["refresh_token"]
        rotated = await _refresh(http, a, parent)
        refreshed_at = time.monotonic()
        assert rotated.status_code == 200, rotated.text
        child = rotated.json()

        replay = await _refresh(http, c, parent)  # inside the window, at another instance
        # a precondition of the test, not a speed claim: the replay above is inside the window
        assert time.monotonic() - refreshed_at < GRACE, "the machine is too slow for the window"
        assert replay.status_code == 200, replay.text
        again = replay.json()
        assert again["refresh_token"] == child["refresh_token"]  # the same successor
        assert again["access_token"] != child["access_token"]  # a fresh access token
        sid = local.verify(first["access_token"]).sid
        assert sid is not None  # one session: every access token carries its sid
        for token in (child["access_token"], again["access_token"]):
            assert local.verify(token).sid == sid

        # past the window (real time: separate processes), the parent is reuse
        await asyncio.sleep(max(0.0, refreshed_at + GRACE + 0.2 - time.monotonic()))
        reused = await _refresh(http, b, parent)
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

        tokens = (first["access_token"], child["access_token"], again["access_token"])

        async def revoked_everywhere() -> bool:
            for base in cluster.bases:
                for token in tokens:
                    if await _userinfo_status(http, base, token) != 401:
                        return False
            return all(_rejects(local, t) for t in tokens)

        took = await _within(LIVENESS, revoked_everywhere)
        print(f"\n{cluster.backend}: reuse at B revoked the family everywhere in {took:.3f} s")
        for base in cluster.bases:  # the live successor is dead too, at every instance
            dead = await _refresh(http, base, child["refresh_token"])
            assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
            assert await _introspect(http, cluster, base, child["refresh_token"]) == {
                "active": False
            }


async def test_fifty_refreshes_of_one_token_over_three_instances_get_one_successor(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        parent = (await _login(http, cluster.bases[0]))["refresh_token"]
        start = time.monotonic()
        answers = await asyncio.gather(
            *(_refresh(http, cluster.bases[i % 3], parent) for i in range(50))
        )
        took = time.monotonic() - start
        # a precondition, not a speed claim: the race fell inside the real-time grace window
        assert took < GRACE, f"the race took {took:.2f} s: the machine is too slow for the window"
        assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers][:3]
        successors = {r.json()["refresh_token"] for r in answers}
        assert len(successors) == 1  # one rotation; 49 grace replays of it
        assert len({r.json()["access_token"] for r in answers}) == 50
        (child,) = successors
        nxt = await _refresh(http, cluster.bases[1], child)
        assert nxt.status_code == 200, nxt.text
        print(f"\n{cluster.backend}: 50 concurrent refreshes over 3 instances in {took:.3f} s")


# -- DPoP (RFC 9449 §11.1): the replay cache is the shared store ------------------------------
async def test_a_dpop_proof_used_at_one_instance_is_a_replay_at_another(cluster: Cluster) -> None:
    from tokenward.dpop import DPoPKey

    key = DPoPKey.generate()
    a, b, c = cluster.bases
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD, "client_id": "app"}
    proof = key.proof("POST", f"{ISSUER}/token")
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{a}/token", data=form, headers={"DPoP": proof})
        assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text
        again = await http.post(f"{b}/token", data=form, headers={"DPoP": proof})
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_dpop_proof"
        assert "replay" in again.json()["error_description"]
        at = r.json()["access_token"]
        headers = {
            "Authorization": f"DPoP {at}",
            "DPoP": key.proof("GET", f"{ISSUER}/userinfo", access_token=at),
        }
        assert (await http.get(f"{b}/userinfo", headers=headers)).status_code == 200
        replayed = await http.get(f"{c}/userinfo", headers=headers)
        assert replayed.status_code == 401 and "replay" in replayed.json()["error_description"]

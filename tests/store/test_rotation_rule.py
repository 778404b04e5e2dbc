"""One rotation rule: :func:`decide_rotation` (memory, SQL) and the Redis Lua mirror agree.

Two levels: the rule itself on a truth table (Python and the Lua function, evaluated by a
real Redis), and every backend end to end — for each scenario the outcome a store returns
equals what :func:`decide_rotation` says about the records it held just before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from support.env import service_missing
from support.stores import REDIS_URL, redis_problem
from tokenward.store.base import (
    Family,
    RefreshTokenRecord,
    RotationOutcome,
    RotationResult,
    Store,
    decide_rotation,
)

R = RotationOutcome
NOW = 1_800_000_000.0
GRACE = 10.0


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


async def new_family(store: Store, sid: str) -> bytes:
    family = Family(
        sid=sid,
        sub="alice",
        client_id="web",
        scope="read",
        created_at=NOW,
        last_used_at=NOW,
        expires_at=NOW + 30 * 86_400,
        idle_expires_at=NOW + 14 * 86_400,
        current_hash=h(f"{sid}/0"),
    )
    await store.create_family(family, RefreshTokenRecord(h(f"{sid}/0"), sid, NOW))
    return h(f"{sid}/0")


async def rotate(store: Store, parent: bytes, child: bytes, *, now: float) -> RotationResult:
    return await store.rotate(
        parent,
        RefreshTokenRecord(child, "s", now),  # every scenario's family is "s"
        now=now,
        grace=GRACE,
        idle_expires_at=now + 3600,
        revocation_until=now + 900,
    )


A, B, C = h("a"), h("b"), h("c")


@dataclass(frozen=True)
class Row:
    """The records a store holds when a token is presented."""

    revoked: bool
    current: bytes
    parent: bytes
    consumed_at: float | None
    successor: bytes | None
    child: bytes
    now: float
    grace: float
    expected: RotationOutcome


TABLE = {
    "revoked-family-wins-over-everything": Row(True, A, A, None, None, B, 100, 10, R.REVOKED),
    "live-unconsumed-leaf-rotates": Row(False, A, A, None, None, B, 100, 10, R.ROTATED),
    "live-leaf-rotates-with-grace-off": Row(False, A, A, None, None, B, 100, 0, R.ROTATED),
    "unconsumed-but-not-the-leaf-is-reuse": Row(False, B, A, None, None, C, 100, 10, R.REUSED),
    "consumed-leaf-is-reuse": Row(False, A, A, 99, None, B, 100, 10, R.REUSED),
    "parent-inside-grace-same-successor": Row(False, B, A, 95, B, B, 100, 10, R.GRACE),
    "parent-exactly-at-grace-edge": Row(False, B, A, 90, B, B, 100, 10, R.GRACE),
    "parent-just-after-grace": Row(False, B, A, 89.999, B, B, 100, 10, R.REUSED),
    "grace-zero-disables-replay": Row(False, B, A, 100, B, B, 100, 0, R.REUSED),
    "grace-with-another-child-is-reuse": Row(False, B, A, 95, B, C, 100, 10, R.REUSED),
    "successor-no-longer-the-leaf-is-reuse": Row(False, C, A, 95, B, B, 100, 10, R.REUSED),
    "consumed-without-successor-is-reuse": Row(False, B, A, 95, None, B, 100, 10, R.REUSED),
}


def _python(row: Row) -> RotationOutcome:
    return decide_rotation(
        family_revoked=row.revoked,
        current_hash=row.current,
        parent_hash=row.parent,
        consumed_at=row.consumed_at,
        successor_hash=row.successor,
        child_hash=row.child,
        now=row.now,
        grace=row.grace,
    )


@pytest.mark.parametrize("name", TABLE)
def test_rule_in_python(name: str) -> None:
    assert _python(TABLE[name]) is TABLE[name].expected


@pytest.mark.services
@pytest.mark.parametrize("name", TABLE)
def test_rule_in_lua_matches_python(name: str) -> None:
    problem = redis_problem()
    if problem:
        service_missing(problem)
    import redis

    from tokenward.store.redis.scripts import DECIDE_ROTATION

    row = TABLE[name]
    harness = (
        DECIDE_ROTATION
        + """
local function opt(v) if v == '' then return false end return v end
return decide_rotation(ARGV[1] == '1', ARGV[2], ARGV[3], opt(ARGV[4]), opt(ARGV[5]), ARGV[6],
                       tonumber(ARGV[7]), tonumber(ARGV[8]))
"""
    )
    args = [
        "1" if row.revoked else "0",
        row.current.hex(),
        row.parent.hex(),
        "" if row.consumed_at is None else repr(float(row.consumed_at)),
        "" if row.successor is None else row.successor.hex(),
        row.child.hex(),
        repr(float(row.now)),
        repr(float(row.grace)),
    ]
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        got = client.eval(harness, 0, *args)
    finally:
        client.close()
    assert R(got) is _python(row) is row.expected


# -- every backend, end to end -------------------------------------------------------------

Scenario = Callable[[Store], Awaitable[tuple[bytes, bytes, float, float]]]


async def _live_leaf(s: Store) -> tuple[bytes, bytes, float, float]:
    t0 = await new_family(s, "s")
    return t0, h("s/1"), NOW, GRACE


async def _rotated_once(s: Store) -> bytes:
    t0 = await new_family(s, "s")
    assert (await rotate(s, t0, h("s/1"), now=NOW)).outcome is R.ROTATED
    return t0


async def _grace_same_successor(s: Store) -> tuple[bytes, bytes, float, float]:
    return await _rotated_once(s), h("s/1"), NOW + GRACE, GRACE


async def _just_after_grace(s: Store) -> tuple[bytes, bytes, float, float]:
    return await _rotated_once(s), h("s/1"), NOW + GRACE + 0.5, GRACE


async def _grace_other_child(s: Store) -> tuple[bytes, bytes, float, float]:
    return await _rotated_once(s), h("s/other"), NOW + 1, GRACE


async def _grace_zero(s: Store) -> tuple[bytes, bytes, float, float]:
    return await _rotated_once(s), h("s/1"), NOW, 0.0


async def _older_ancestor(s: Store) -> tuple[bytes, bytes, float, float]:
    t0 = await _rotated_once(s)
    assert (await rotate(s, h("s/1"), h("s/2"), now=NOW + 1)).outcome is R.ROTATED
    return t0, h("s/1"), NOW + 2, GRACE


async def _revoked(s: Store) -> tuple[bytes, bytes, float, float]:
    t0 = await new_family(s, "s")
    await s.revoke_family("s", now=NOW, reason="logout", until=NOW + 900)
    return t0, h("s/1"), NOW + 1, GRACE


async def _after_reuse(s: Store) -> tuple[bytes, bytes, float, float]:
    t0 = await _rotated_once(s)
    assert (await rotate(s, t0, h("s/x"), now=NOW + GRACE + 1)).outcome is R.REUSED
    return h("s/1"), h("s/2"), NOW + GRACE + 2, GRACE


SCENARIOS: dict[str, tuple[Scenario, RotationOutcome]] = {
    "live-leaf": (_live_leaf, R.ROTATED),
    "grace-same-successor": (_grace_same_successor, R.GRACE),
    "just-after-grace": (_just_after_grace, R.REUSED),
    "grace-other-child": (_grace_other_child, R.REUSED),
    "grace-zero": (_grace_zero, R.REUSED),
    "older-ancestor": (_older_ancestor, R.REUSED),
    "revoked-family": (_revoked, R.REVOKED),
    "leaf-after-reuse": (_after_reuse, R.REVOKED),
}


@pytest.mark.parametrize("name", SCENARIOS)
async def test_every_backend_decides_as_the_rule_says(store: Store, name: str) -> None:
    scenario, expected = SCENARIOS[name]
    parent, child, now, grace = await scenario(store)
    found = await store.get_refresh_token(parent, sid="s")
    assert found is not None
    record, family = found
    ruled = decide_rotation(
        family_revoked=family.revoked,
        current_hash=family.current_hash,
        parent_hash=parent,
        consumed_at=record.consumed_at,
        successor_hash=record.successor_hash,
        child_hash=child,
        now=now,
        grace=grace,
    )
    result = await store.rotate(
        parent,
        RefreshTokenRecord(child, "s", now),  # every scenario's family is "s"
        now=now,
        grace=grace,
        idle_expires_at=now + 3600,
        revocation_until=now + 900,
    )
    assert result.outcome is ruled is expected


async def test_unknown_token_is_not_found_on_every_backend(store: Store) -> None:
    await new_family(store, "s")
    result = await rotate(store, h("nobody"), h("child"), now=NOW)
    assert result.outcome is R.NOT_FOUND

"""The refresh path of a SQLite store as plain ``sqlite3`` functions, each run whole in a
:class:`~tokenward.store.sql.lane.Lane`'s thread: the token lookup (one joined ``SELECT``),
the user and client lookups, and the rotation (``BEGIN IMMEDIATE``, one joined ``SELECT``,
then at most three writes and ``COMMIT``).

Same rule, same rows as the SQLAlchemy path of :class:`~tokenward.store.sql.SQLStore`
(``decide_rotation``; the conformance suite runs both).

Durability (https://sqlite.org/pragma.html#pragma_synchronous, WAL journal): the rotation
lane runs at ``synchronous = NORMAL`` — a commit is in the WAL (the OS has it) when it
returns, so it survives a crash of the process; the WAL is fsynced at checkpoints and by the
next ``FULL`` commit. A transaction that revokes (reuse detected) runs at ``FULL``: it is
fsynced before it is acknowledged, and with it every rotation committed before it.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from ..base import (
    Client,
    Family,
    RefreshTokenRecord,
    RevocationEvent,
    RevocationKind,
    RotationOutcome,
    RotationResult,
    User,
    decide_rotation,
)
from .schema import (
    REVOCATION_COUNTER,
    client_from_row,
    family_from_row,
    opt_bytes,
    token_from_row,
    user_from_row,
)

__all__ = ["get_client", "get_refresh_token", "get_user", "rotate"]

REUSE_REASON = "refresh_token_reuse"

_JOINED = (
    "SELECT f.sid, f.sub, f.client_id, f.scope, f.created_at, f.last_used_at, f.expires_at,"
    " f.idle_expires_at, f.current_hash, f.generation, f.user_agent, f.ip, f.device,"
    " f.revoked_at, f.revoked_reason, f.dpop_jkt,"
    " t.created_at AS t_created_at, t.parent_hash AS t_parent_hash,"
    " t.consumed_at AS t_consumed_at, t.successor_hash AS t_successor_hash"
    " FROM refresh_tokens t JOIN families f ON f.sid = t.sid WHERE t.token_hash = ?"
)
_CONSUME = (
    "UPDATE refresh_tokens SET consumed_at = ?, successor_hash = ?"
    " WHERE token_hash = ? AND consumed_at IS NULL"
)
_INSERT_CHILD = (
    "INSERT INTO refresh_tokens (token_hash, sid, parent_hash, created_at) VALUES (?, ?, ?, ?)"
)
_ADVANCE = (
    "UPDATE families SET current_hash = ?, generation = ?, last_used_at = ?,"
    " idle_expires_at = ? WHERE sid = ?"
)
_TOUCH = "UPDATE families SET last_used_at = ?, idle_expires_at = ? WHERE sid = ?"
_REVOKE = "UPDATE families SET revoked_at = ?, revoked_reason = ? WHERE sid = ?"
_NEXT_SEQ = "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value"
_APPEND = "INSERT INTO revocations (seq, kind, value, until, at) VALUES (?, ?, ?, ?, ?)"


class _Row:
    """What the schema's ``*_from_row`` read: ``row._mapping[name]``."""

    __slots__ = ("_mapping",)

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self._mapping = dict(zip(names, values, strict=True))


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    cur = conn.execute(sql, params)
    rows = cur.fetchall()  # to the end: the statement is reset, its read snapshot released
    if not rows:
        return None
    names = tuple(d[0] for d in cur.description)
    return cast(Any, _Row(names, rows[0]))


def get_refresh_token(
    conn: sqlite3.Connection, token_hash: bytes
) -> tuple[RefreshTokenRecord, Family] | None:
    row = _one(conn, _JOINED, (token_hash,))
    if row is None:
        return None
    return token_from_row(token_hash, row), family_from_row(row)


def get_user(conn: sqlite3.Connection, username: str) -> User | None:
    row = _one(conn, "SELECT * FROM users WHERE username = ?", (username,))
    return None if row is None else user_from_row(row)


def get_client(conn: sqlite3.Connection, client_id: str) -> Client | None:
    row = _one(conn, "SELECT * FROM clients WHERE client_id = ?", (client_id,))
    return None if row is None else client_from_row(row)


def rotate(
    conn: sqlite3.Connection,
    parent_hash: bytes,
    child: RefreshTokenRecord,
    now: float,
    grace: float,
    idle_expires_at: float,
    revocation_until: float,
) -> RotationResult:
    """``Store.rotate`` (see :mod:`tokenward.store.base`). A decision to revoke (reuse) is
    rolled back and taken again at ``synchronous = FULL`` (the connection's level is set
    outside a transaction, and set back after)."""
    args = (parent_hash, child, now, grace, idle_expires_at, revocation_until)
    result = _rotate_once(conn, *args, revoke=False)
    if result is not None:
        return result
    _synchronous(conn, "FULL")
    try:
        result = _rotate_once(conn, *args, revoke=True)
    finally:
        _synchronous(conn, "NORMAL")
    assert result is not None
    return result


def _synchronous(conn: sqlite3.Connection, level: str) -> None:
    """Set the connection's level (a setting, not a statement of a transaction: a lane's
    statement hook does not see it)."""
    getattr(conn, "raw", conn).execute(f"PRAGMA synchronous = {level}")


def _rotate_once(
    conn: sqlite3.Connection,
    parent_hash: bytes,
    child: RefreshTokenRecord,
    now: float,
    grace: float,
    idle_expires_at: float,
    revocation_until: float,
    *,
    revoke: bool,
) -> RotationResult | None:
    """One transaction; ``None`` when the outcome is a reuse and ``revoke`` is false."""
    # BEGIN IMMEDIATE holds the database's write lock before the read: no writer of this or
    # another process can interleave between the decision and the writes
    conn.execute("BEGIN IMMEDIATE")
    row = _one(conn, _JOINED, (parent_hash,))
    if row is None:
        conn.execute("ROLLBACK")
        return RotationResult(RotationOutcome.NOT_FOUND)
    family = family_from_row(row)
    if family.revoked:
        conn.execute("ROLLBACK")
        return RotationResult(RotationOutcome.REVOKED, family)
    m = row._mapping
    outcome = decide_rotation(
        family_revoked=False,
        current_hash=family.current_hash,
        parent_hash=parent_hash,
        consumed_at=m["t_consumed_at"],
        successor_hash=opt_bytes(m["t_successor_hash"]),
        child_hash=child.token_hash,
        now=now,
        grace=grace,
    )
    if outcome is RotationOutcome.ROTATED:
        won = conn.execute(_CONSUME, (now, child.token_hash, parent_hash)).rowcount == 1
        if won:  # always, under the lock; a lost compare-and-set would count as reuse
            conn.execute(
                _INSERT_CHILD, (child.token_hash, family.sid, parent_hash, child.created_at)
            )
            family.current_hash = child.token_hash
            family.generation += 1
            family.last_used_at = now
            family.idle_expires_at = idle_expires_at
            conn.execute(
                _ADVANCE,
                (child.token_hash, family.generation, now, idle_expires_at, family.sid),
            )
            conn.execute("COMMIT")
            return RotationResult(RotationOutcome.ROTATED, family)
    elif outcome is RotationOutcome.GRACE:
        family.last_used_at = now
        family.idle_expires_at = idle_expires_at
        conn.execute(_TOUCH, (now, idle_expires_at, family.sid))
        conn.execute("COMMIT")
        return RotationResult(RotationOutcome.GRACE, family)
    if not revoke:
        conn.execute("ROLLBACK")
        return None
    conn.execute(_REVOKE, (now, REUSE_REASON, family.sid))
    family.revoked_at = now
    family.revoked_reason = REUSE_REASON
    (seq,) = conn.execute(_NEXT_SEQ, (REVOCATION_COUNTER,)).fetchone()
    kind = RevocationKind.SID
    conn.execute(_APPEND, (int(seq), kind.value, family.sid, revocation_until, now))
    conn.execute("COMMIT")
    event = RevocationEvent(int(seq), kind, family.sid, float(revocation_until), float(now))
    return RotationResult(RotationOutcome.REUSED, family, event)

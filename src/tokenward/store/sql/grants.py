"""Authorization-code / OpenID Connect records of :class:`~tokenward.store.sql.SQLStore`.

One table, ``grant_records`` (``kind``, ``key``) → ``owner``, JSON ``data``, ``expires_at``,
``version``. Single use is a compare-and-set ``UPDATE … WHERE version = :seen`` (one statement,
atomic on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Executable, Row, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..base import GrantRecord
from .schema import grant_records

__all__ = ["SQLGrantRecordsMixin"]


def _live(now: float) -> Any:
    c = grant_records.c
    return or_(c.expires_at.is_(None), c.expires_at > now)


def _from_row(row: Row[Any]) -> GrantRecord:
    m = row._mapping
    return GrantRecord(
        kind=m["kind"],
        key=m["key"],
        owner=m["owner"],
        data=orjson.loads(m["data"]),
        expires_at=m["expires_at"],
        version=int(m["version"]),
    )


class SQLGrantRecordsMixin:
    """Needs ``backend``, ``_tx``, ``_read`` and ``_insert`` from the store class."""

    backend: str

    def _tx(
        self, *, write: bool, timeout: float | None = None, single: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _read(self, stmt: Executable) -> Sequence[Row[Any]]:
        raise NotImplementedError

    if TYPE_CHECKING:  # provided by SQLRecordsMixin

        def _insert(self, table: Any) -> Any: ...

    async def create_record(self, record: GrantRecord, *, now: float) -> bool:
        c = grant_records.c
        values = {
            "kind": record.kind,
            "key": record.key,
            "owner": record.owner,
            "data": orjson.dumps(record.data).decode(),
            "expires_at": record.expires_at,
            "version": 0,
        }
        async with self._tx(write=True) as conn:
            # an expired record with this key is replaced
            await conn.execute(
                delete(grant_records).where(
                    c.kind == record.kind,
                    c.key == record.key,
                    c.expires_at.is_not(None),
                    c.expires_at <= now,
                )
            )
            stmt = (
                self._insert(grant_records)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(c.key)
            )
            return (await conn.execute(stmt)).first() is not None

    async def get_record(self, kind: str, key: str, *, now: float) -> GrantRecord | None:
        c = grant_records.c
        rows = await self._read(
            select(grant_records).where(c.kind == kind, c.key == key, _live(now))
        )
        return _from_row(rows[0]) if rows else None

    async def update_record(self, record: GrantRecord, *, now: float) -> bool:
        c = grant_records.c
        stmt = (
            update(grant_records)
            .where(
                and_(
                    c.kind == record.kind,
                    c.key == record.key,
                    c.version == record.version,
                    _live(now),
                )
            )
            .values(
                owner=record.owner,
                data=orjson.dumps(record.data).decode(),
                expires_at=record.expires_at,
                version=record.version + 1,
            )
        )
        async with self._tx(write=True, single=True) as conn:
            return bool((await conn.execute(stmt)).rowcount == 1)

    async def delete_record(self, kind: str, key: str) -> bool:
        c = grant_records.c
        async with self._tx(write=True, single=True) as conn:
            res = await conn.execute(delete(grant_records).where(c.kind == kind, c.key == key))
            return bool(res.rowcount)

    async def list_records(self, kind: str, owner: str, *, now: float) -> list[GrantRecord]:
        c = grant_records.c
        rows = await self._read(
            select(grant_records)
            .where(c.kind == kind, c.owner == owner, _live(now))
            .order_by(c.key)
        )
        return [_from_row(r) for r in rows]

    async def purge_records(self, *, now: float) -> int:
        c = grant_records.c
        async with self._tx(write=True, single=True) as conn:
            res = await conn.execute(
                delete(grant_records).where(c.expires_at.is_not(None), c.expires_at <= now)
            )
            return int(res.rowcount)

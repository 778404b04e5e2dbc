"""Keys, secrets, users and clients of :class:`~tokenward.store.sql.SQLStore`.

Plain single-statement CRUD, kept apart from the token lifecycle. Lookups run as one
statement on its own (``SQLStore._read``: no BEGIN/COMMIT round trips). Inserts that must not
overwrite use ``INSERT … ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL dialects alike) and
report a duplicate as :class:`~tokenward.errors.AlreadyExists`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Executable, Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import AlreadyExists, ConfigurationError, NotFound
from ..base import Client, Resource, Role, User
from .schema import (
    client_from_row,
    client_to_row,
    clients,
    dpop_jtis,
    keys,
    rate_events,
    resource_from_row,
    resource_to_row,
    resources,
    role_from_row,
    role_to_row,
    roles,
    secrets,
    user_from_row,
    user_to_row,
    users,
)

__all__ = ["SQLRecordsMixin"]


class SQLRecordsMixin:
    """Needs ``backend`` and ``_tx`` from the store class."""

    backend: str

    def _tx(
        self, *, write: bool, timeout: float | None = None, single: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _read(self, stmt: Executable) -> Sequence[Row[Any]]:
        raise NotImplementedError

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

    # -- keys and secrets ------------------------------------------------------------------
    async def load_keys(self) -> bytes | None:
        rows = await self._read(select(keys.c.blob).where(keys.c.id == 1))
        return bytes(rows[0][0]) if rows else None

    async def save_keys(self, blob: bytes) -> None:
        stmt = self._insert(keys).values(id=1, blob=bytes(blob))
        stmt = stmt.on_conflict_do_update(index_elements=[keys.c.id], set_={"blob": bytes(blob)})
        async with self._tx(write=True) as conn:
            await conn.execute(stmt)

    async def get_or_create_secret(self, name: str, factory: Callable[[], bytes]) -> bytes:
        query = select(secrets.c.value).where(secrets.c.name == name)
        async with self._tx(write=False) as conn:
            value = (await conn.execute(query)).scalar()
        if value is not None:
            return bytes(value)
        candidate = bytes(factory())
        async with self._tx(write=True) as conn:  # first writer wins
            await conn.execute(
                self._insert(secrets).values(name=name, value=candidate).on_conflict_do_nothing()
            )
            value = (await conn.execute(query)).scalar_one()
        return bytes(value)

    # -- users and clients -----------------------------------------------------------------
    async def create_user(self, user: User) -> None:
        stmt = (
            self._insert(users)
            .values(**user_to_row(user))
            .on_conflict_do_nothing()
            .returning(users.c.username)
        )
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).first() is None:
                raise AlreadyExists(f"user {user.username!r} exists")

    async def get_user(self, username: str) -> User | None:
        rows = await self._read(select(users).where(users.c.username == username))
        return user_from_row(rows[0]) if rows else None

    async def update_user(self, user: User) -> None:
        values = user_to_row(user)
        del values["username"]
        stmt = update(users).where(users.c.username == user.username).values(**values)
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise NotFound(f"unknown user {user.username!r}")

    async def list_users(self) -> list[User]:
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(select(users).order_by(users.c.username))).all()
        return [user_from_row(r) for r in rows]

    async def delete_user(self, username: str) -> bool:
        async with self._tx(write=True) as conn:
            result = await conn.execute(delete(users).where(users.c.username == username))
            return bool(result.rowcount)

    async def create_client(self, client: Client) -> None:
        stmt = (
            self._insert(clients)
            .values(**client_to_row(client))
            .on_conflict_do_nothing()
            .returning(clients.c.client_id)
        )
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).first() is None:
                raise AlreadyExists(f"client {client.client_id!r} exists")

    async def get_client(self, client_id: str) -> Client | None:
        query = select(clients).where(clients.c.client_id == client_id)
        rows = await self._read(query)
        return client_from_row(rows[0]) if rows else None

    async def list_clients(self) -> list[Client]:
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(select(clients).order_by(clients.c.client_id))).all()
        return [client_from_row(r) for r in rows]

    async def update_client(self, client: Client) -> None:
        values = client_to_row(client)
        del values["client_id"]
        stmt = update(clients).where(clients.c.client_id == client.client_id).values(**values)
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise NotFound(f"unknown client {client.client_id!r}")

    async def delete_client(self, client_id: str) -> bool:
        stmt = delete(clients).where(clients.c.client_id == client_id)
        async with self._tx(write=True) as conn:
            return bool((await conn.execute(stmt)).rowcount)

    # -- resources and roles ---------------------------------------------------------------
    async def _create(self, table: Any, row: dict[str, Any], key: Any, what: str) -> None:
        stmt = self._insert(table).values(**row).on_conflict_do_nothing().returning(key)
        async with self._tx(write=True) as conn:
            if (await conn.execute(stmt)).first() is None:
                raise ConfigurationError(f"{what} exists")

    async def _update(self, table: Any, row: dict[str, Any], key: Any, what: str) -> None:
        name = key.name
        values = dict(row)
        ident = values.pop(name)
        async with self._tx(write=True) as conn:
            if (
                await conn.execute(update(table).where(key == ident).values(**values))
            ).rowcount == 0:
                raise ConfigurationError(f"unknown {what}")

    async def _delete(self, table: Any, key: Any, ident: str) -> bool:
        async with self._tx(write=True) as conn:
            return bool((await conn.execute(delete(table).where(key == ident))).rowcount)

    async def create_resource(self, resource: Resource) -> None:
        what = f"resource {resource.identifier!r}"
        await self._create(resources, resource_to_row(resource), resources.c.identifier, what)

    async def update_resource(self, resource: Resource) -> None:
        what = f"resource {resource.identifier!r}"
        await self._update(resources, resource_to_row(resource), resources.c.identifier, what)

    async def get_resource(self, identifier: str) -> Resource | None:
        rows = await self._read(select(resources).where(resources.c.identifier == identifier))
        return resource_from_row(rows[0]) if rows else None

    async def list_resources(self) -> list[Resource]:
        rows = await self._read(select(resources).order_by(resources.c.identifier))
        return [resource_from_row(r) for r in rows]

    async def delete_resource(self, identifier: str) -> bool:
        return await self._delete(resources, resources.c.identifier, identifier)

    async def create_role(self, role: Role) -> None:
        await self._create(roles, role_to_row(role), roles.c.name, f"role {role.name!r}")

    async def update_role(self, role: Role) -> None:
        await self._update(roles, role_to_row(role), roles.c.name, f"role {role.name!r}")

    async def get_role(self, name: str) -> Role | None:
        rows = await self._read(select(roles).where(roles.c.name == name))
        return role_from_row(rows[0]) if rows else None

    async def list_roles(self) -> list[Role]:
        rows = await self._read(select(roles).order_by(roles.c.name))
        return [role_from_row(r) for r in rows]

    async def delete_role(self, name: str) -> bool:
        return await self._delete(roles, roles.c.name, name)

    # -- DPoP replay cache -----------------------------------------------------------------
    async def rate_hit(self, key: str, *, now: float, window: float, limit: int) -> bool:
        r = rate_events.c
        count = select(func.count()).where(r.key == key, r.at > now - window)
        async with self._tx(write=True) as conn:
            if self.backend == "postgresql":  # serialise the hits of one key (count + insert)
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
            if (await conn.execute(count)).scalar_one() >= limit:
                return False
            await conn.execute(insert(rate_events).values(key=key, at=now, until=now + window))
            return True

    async def rate_window(self, key: str, *, now: float, window: float) -> tuple[int, float]:
        r = rate_events.c
        query = select(func.count(), func.min(r.at)).where(r.key == key, r.at > now - window)
        row: Any = (await self._read(query))[0]
        n, oldest = row[0], row[1]
        return int(n), (float(oldest) + window if oldest is not None else now)

    async def rate_clear(self, key: str) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(delete(rate_events).where(rate_events.c.key == key))

    async def dpop_jti_seen(self, key: str, *, now: float, until: float) -> bool:
        # one transaction: an expired entry is dropped, then the insert decides (the primary
        # key makes concurrent inserts of one key race to exactly one winner)
        stmt = (
            self._insert(dpop_jtis)
            .values(key=key, until=until)
            .on_conflict_do_nothing()
            .returning(dpop_jtis.c.key)
        )
        async with self._tx(write=True) as conn:
            await conn.execute(
                delete(dpop_jtis).where(dpop_jtis.c.key == key, dpop_jtis.c.until <= now)
            )
            return (await conn.execute(stmt)).first() is None

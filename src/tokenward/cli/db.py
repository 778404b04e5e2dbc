"""``tokenward db upgrade``, ``db migrate-redis`` and ``db purge``: the store's schema, the
Redis key layout and retention.

``upgrade`` applies the SQL store's Alembic migrations to head (the same thing ``serve`` and
every store ``open()`` do, here explicitly and with the resulting revision printed); it is
idempotent and safe to run while servers are up. ``migrate-redis`` moves a Redis store's data
written before the sharded, cluster-ready key layout into it (idempotent; run it after stopping
the servers of the older version, before starting the new ones). ``purge`` runs the retention
sweep once: families past their absolute or idle expiry plus ``--margin`` (kept that long so a
late reuse of their tokens is still recognised), their refresh tokens, and revocation events
past ``until``. Both take ``--store URL`` or fall back to the configured store.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ..errors import ConfigurationError
from ..server.settings import load_settings
from ..store import store_from_url
from ..store.base import PurgeCounts, Store
from ._common import cli_errors, get_clock, out_console, parse_duration
from ._store import DEFAULT_STORE_HELP

__all__ = ["app"]

app = typer.Typer(help="Store schema (migrations) and retention (purge).", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help=DEFAULT_STORE_HELP)]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Per-call store timeout, seconds")]


def _store_url(store: str | None) -> str:
    return load_settings(store_url=store).store_url if store is None else store


def _open(url: str, timeout: float) -> Store:
    options = {} if url.startswith("memory:") else {"timeout": timeout}
    return store_from_url(url, **options)


@app.command()
@cli_errors
def upgrade(store: StoreOpt = None, timeout: TimeoutOpt = 10.0) -> None:
    """Create or migrate the store's schema to the newest revision (idempotent)."""
    url = _store_url(store)

    async def go() -> str:
        from ..store.sql import SQLStore, head_revision

        st = _open(url, timeout)
        if not isinstance(st, SQLStore):
            await st.open()
            await st.close()
            return f"{type(st).__name__} has no schema to migrate"
        try:
            await st.open()  # migrates to head under the migration lock
            revision = await st.upgrade()
        finally:
            await st.close()
        state = "head" if revision == head_revision() else "not head"
        return f"{st.backend} store at {st.safe_url}: schema at revision {revision} ({state})"

    out_console.print(asyncio.run(go()), markup=False)


@app.command("migrate-redis")
@cli_errors
def migrate_redis(store: StoreOpt = None, timeout: TimeoutOpt = 10.0) -> None:
    """Move a Redis store's data into the sharded key layout (idempotent)."""
    url = _store_url(store)

    async def go() -> tuple[int, int]:
        from ..store.redis import RedisStore

        st = _open(url, timeout)
        try:
            if not isinstance(st, RedisStore):
                raise ConfigurationError(f"--store: {type(st).__name__} is not a Redis store")
            return await st.migrate_layout()
        finally:
            await st.close()

    families, entries = asyncio.run(go())
    out_console.print(
        f"moved {families} families and {entries} purge-index entries into the sharded layout",
        markup=False,
    )


@app.command()
@cli_errors
def purge(
    store: StoreOpt = None,
    margin: Annotated[
        str, typer.Option("--margin", help="Keep expired families this long (e.g. 7d, 12h)")
    ] = "7d",
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Delete expired families (+ margin), their refresh tokens and expired revocations."""
    url = _store_url(store)
    seconds = parse_duration(margin)

    async def go() -> PurgeCounts:
        async with _open(url, timeout) as st:
            return await st.purge(now=get_clock().now(), margin=seconds)

    counts = asyncio.run(go())
    out_console.print(
        f"purged {counts.families} families, {counts.refresh_tokens} refresh tokens, "
        f"{counts.revocations} revocation events",
        markup=False,
    )

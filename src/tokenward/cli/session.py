"""``tokenward session list SUB`` and ``tokenward session revoke SID``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._store import run_with_store

__all__ = ["app"]

app = typer.Typer(help="Sessions (refresh-token families).", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL")]


@app.command("list")
@cli_errors
def list_sessions(
    sub: str,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked")] = False,
    store: StoreOpt = None,
) -> None:
    """A subject's sessions, newest first."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("session", "client", "scope", "created", "last used", "ip", "revoked")
        for f in await st.list_families(sub, include_revoked=all_):
            table.add_row(
                f.sid,
                f.client_id,
                f.scope,
                format_ts(f.created_at),
                format_ts(f.last_used_at),
                f.ip or "",
                f.revoked_reason or "",
            )
        out_console.print(table)

    run_with_store(store, go)


@app.command()
@cli_errors
def revoke(sid: str, store: StoreOpt = None) -> None:
    """Revoke one session (its refresh tokens and, via the feed, its access tokens)."""

    async def go(settings: Settings, st: Store) -> bool:
        now = get_clock().now()
        until = now + settings.access_token_ttl + settings.leeway
        return await st.revoke_family(sid, now=now, reason="cli", until=until) is not None

    if not run_with_store(store, go):
        raise fail(f"no live session {sid}")
    out_console.print(f"revoked session {sid}")

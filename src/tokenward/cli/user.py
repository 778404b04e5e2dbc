"""``tokenward user add|list|disable|enable``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from ..server.settings import Settings
from ..server.users import UserService, hasher_from_settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._store import run_with_store

__all__ = ["app"]

app = typer.Typer(help="Users (argon2id passwords).", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL")]


def _service(settings: Settings, store: Store) -> UserService:
    return UserService(store, hasher=hasher_from_settings(settings), clock=get_clock())


@app.command()
@cli_errors
def add(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Administrator")] = False,
    store: StoreOpt = None,
) -> None:
    """Create a user."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("empty password")

    async def go(settings: Settings, st: Store) -> None:
        await _service(settings, st).create(username, password, is_admin=admin)

    run_with_store(store, go)
    out_console.print(f"created user {username}{' (admin)' if admin else ''}")


@app.command("list")
@cli_errors
def list_users(store: StoreOpt = None) -> None:
    """List users."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("username", "admin", "disabled", "created")
        for u in await st.list_users():
            table.add_row(
                u.username,
                "yes" if u.is_admin else "",
                "yes" if u.disabled else "",
                format_ts(u.created_at),
            )
        out_console.print(table)

    run_with_store(store, go)


def _set(username: str, disabled: bool, store: str | None) -> int:
    async def go(settings: Settings, st: Store) -> int:
        await _service(settings, st).set_disabled(username, disabled)
        if not disabled:
            return 0
        now = get_clock().now()
        until = now + settings.access_token_ttl + settings.leeway
        events = await st.revoke_subject(username, now=now, until=until)
        return sum(1 for e in events if e.kind.value == "sid")

    return run_with_store(store, go)


@app.command()
@cli_errors
def disable(username: str, store: StoreOpt = None) -> None:
    """Disable a user and revoke all its sessions."""
    n = _set(username, True, store)
    out_console.print(f"disabled {username}; revoked {n} session(s)")


@app.command()
@cli_errors
def enable(username: str, store: StoreOpt = None) -> None:
    """Enable a disabled user."""
    _set(username, False, store)
    out_console.print(f"enabled {username}")

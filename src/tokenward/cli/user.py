"""``tokenward user add|list|roles|disable|enable``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from ..server.authz import RoleRegistry, check_roles
from ..server.settings import Settings
from ..server.users import UserService, hasher_from_settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._store import run_with_store
from .authz import open_model, revoke_now

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
    admin: Annotated[bool, typer.Option("--admin", help="Administrator (the admin role)")] = False,
    roles: Annotated[
        str | None, typer.Option("--roles", help="Comma-separated roles, e.g. clerk,manager")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Create a user."""
    role_names = [r.strip() for r in (roles or "").split(",") if r.strip()]
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("empty password")

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        await check_roles(st, role_names)
        await _service(settings, st).create(username, password, is_admin=admin, roles=role_names)

    run_with_store(store, go)
    given = role_names + (["admin"] if admin and "admin" not in role_names else [])
    out_console.print(
        f"created user {username}" + (f" (roles: {','.join(given)})" if given else "")
    )


@app.command("roles")
@cli_errors
def set_roles(
    username: str,
    roles: Annotated[str, typer.Argument(help="Comma-separated roles (replaces them); '' none")],
    now: Annotated[
        bool, typer.Option("--now", help="Revoke the affected sessions at once (else: at refresh)")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Set a user's roles."""

    async def go(settings: Settings, st: Store) -> int:
        await open_model(settings, st)
        await RoleRegistry(st, issuer=settings.issuer).set_user_roles(username, roles)
        return await revoke_now(settings, st, usernames=[username]) if now else 0

    n = run_with_store(store, go)
    out_console.print(
        f"{username}: roles {roles or '(none)'}" + (f"; revoked {n} session(s)" if now else "")
    )


@app.command("list")
@cli_errors
def list_users(store: StoreOpt = None) -> None:
    """List users."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("username", "roles", "disabled", "created")
        for u in await st.list_users():
            table.add_row(
                u.username,
                ",".join(u.roles),
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

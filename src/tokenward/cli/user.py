"""``tokenward user add|list|roles|disable|enable|passwd|remove``.

Passwords follow the server's one policy (:mod:`tokenward.server.passwords`: at least 8
characters, not one of the most common passwords); the last active admin cannot be disabled or
removed. ``list`` never creates a store.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..server.authz import RoleRegistry, check_roles
from ..server.settings import Settings
from ..server.users import UserService, hasher_from_settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._output import JsonOpt, Output, OutputOpt, emit
from ._store import DEFAULT_STORE_HELP, run_with_store
from .authz import open_model, revoke_now

__all__ = ["app"]

app = typer.Typer(help="Users (argon2id passwords).", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help=DEFAULT_STORE_HELP)]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (one line).")
]


def _service(settings: Settings, store: Store) -> UserService:
    return UserService(store, hasher=hasher_from_settings(settings), clock=get_clock())


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("empty password")
    return password


@app.command()
@cli_errors
def add(
    username: str,
    password_stdin: PasswordStdin = False,
    admin: Annotated[bool, typer.Option("--admin", help="Administrator (the admin role).")] = False,
    roles: Annotated[
        str | None, typer.Option("--roles", help="Comma-separated roles, e.g. clerk,manager")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Create a user (creates the store on first use)."""
    password = _read_password(password_stdin)
    role_names = [r.strip() for r in (roles or "").split(",") if r.strip()]

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
        registry = RoleRegistry(st, issuer=settings.issuer)
        before, after = await registry.set_user_roles(username, roles)
        if tuple(before.roles) != tuple(after.roles):
            changed: dict[str, object] = {"sub": after.username, "roles": list(after.roles)}
            await _signal(settings, st, ("roles_changed", changed))
        return await revoke_now(settings, st, usernames=[username]) if now else 0

    n = run_with_store(store, go)
    out_console.print(
        f"{username}: roles {roles or '(none)'}" + (f"; revoked {n} session(s)" if now else "")
    )


@app.command("list")
@cli_errors
def list_users(
    store: StoreOpt = None, output: OutputOpt = Output.table, json: JsonOpt = False
) -> None:
    """List users."""

    async def go(settings: Settings, st: Store) -> None:
        rows = [
            {
                "username": u.username,
                "roles": list(u.roles),
                "disabled": u.disabled,
                "created_at": u.created_at,
            }
            for u in await st.list_users()
        ]
        yes = {"roles": ",".join, "disabled": lambda v: "yes" if v else ""}
        emit(
            rows,
            ["username", "roles", "disabled", "created_at"],
            output=output,
            json=json,
            labels={"created_at": "created"},
            show={**yes, "created_at": format_ts},
        )

    run_with_store(store, go, create=False)


async def _signal(settings: Settings, st: Store, *events: tuple[str, dict[str, object]]) -> None:
    """Tell the Shared Signals streams (a running server delivers the pushes)."""
    from ..server.ssf_transmitter import publish_offline

    await publish_offline(settings, st, events, clock=get_clock())


def _set(username: str, disabled: bool, store: str | None) -> int:
    async def go(settings: Settings, st: Store) -> int:
        user = await _service(settings, st).set_disabled(username, disabled)
        if not disabled:
            await _signal(settings, st, ("user_enabled", {"sub": user.username}))
            return 0
        n = await _revoke_all(settings, st, user.username)
        await _signal(
            settings,
            st,
            ("user_disabled", {"sub": user.username}),
            ("revoked", {"kind": "sub", "value": user.username, "reason": "cli"}),
        )
        return n

    return run_with_store(store, go, create=False)


async def _revoke_all(settings: Settings, st: Store, username: str) -> int:
    now = get_clock().now()
    until = now + settings.access_token_ttl + settings.leeway
    events = await st.revoke_subject(username, now=now, until=until)
    return sum(1 for e in events if e.kind.value == "sid")


@app.command()
@cli_errors
def disable(username: str, store: StoreOpt = None) -> None:
    """Disable a user and revoke all its sessions (never the last active admin)."""
    n = _set(username, True, store)
    out_console.print(f"disabled {username}; revoked {n} session(s)")


@app.command()
@cli_errors
def enable(username: str, store: StoreOpt = None) -> None:
    """Enable a disabled user."""
    _set(username, False, store)
    out_console.print(f"enabled {username}")


@app.command()
@cli_errors
def passwd(username: str, password_stdin: PasswordStdin = False, store: StoreOpt = None) -> None:
    """Set a user's password and end all its sessions."""
    password = _read_password(password_stdin)

    async def go(settings: Settings, st: Store) -> int:
        user = await _service(settings, st).set_password(username, password)
        n = await _revoke_all(settings, st, user.username)
        await _signal(
            settings,
            st,
            ("password_changed", {"sub": user.username, "reason": "admin_reset"}),
            ("revoked", {"kind": "sub", "value": user.username, "reason": "cli"}),
        )
        return n

    n = run_with_store(store, go, create=False)
    out_console.print(f"changed the password of {username}; revoked {n} session(s)")


@app.command()
@cli_errors
def remove(
    username: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    store: StoreOpt = None,
) -> None:
    """Delete a user after revoking all its sessions (never the last active admin)."""
    if not yes and not typer.confirm(f"remove user {username} and end its sessions?"):
        raise typer.Exit(1)

    async def go(settings: Settings, st: Store) -> int:
        service = _service(settings, st)
        if await service.get(username) is None:
            raise fail(f"no user {username!r}")
        await service.remove(username)  # refuses the last admin before anything changes
        return await _revoke_all(settings, st, username)

    n = run_with_store(store, go, create=False)
    out_console.print(f"removed user {username}; revoked {n} session(s)")

"""``tokenward resource …`` and ``tokenward role …``: the authorization model.

A resource is an API (its identifier becomes the tokens' ``aud``) with the scopes it defines;
a role is a named set of scopes that users are given (``tokenward user roles``). A change
that takes scope away applies at each affected session's next refresh; ``--now`` revokes the
affected sessions at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from ..server.authz import ResourceRegistry, RoleRegistry
from ..server.authz_changes import (
    affected_sessions,
    revoke_families,
    upgrade_authorization_model,
)
from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, get_clock, out_console, parse_duration
from ._store import run_with_store

__all__ = ["open_model", "resource_app", "revoke_now", "role_app"]

resource_app = typer.Typer(help="Resources: the APIs tokens are for, and their scopes.")
role_app = typer.Typer(help="Roles: named sets of scopes that users are given.")
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL")]
NowOpt = Annotated[
    bool, typer.Option("--now", help="Revoke the affected sessions at once (else: at refresh)")
]


async def open_model(settings: Settings, store: Store) -> None:
    """Bring a store from before the authorization model into it (idempotent)."""
    await upgrade_authorization_model(
        store,
        issuer=settings.issuer,
        default_resource=settings.default_resource,
        console_client_id=settings.console_client_id,
    )


def _resources(settings: Settings, store: Store) -> ResourceRegistry:
    return ResourceRegistry(
        store,
        issuer=settings.issuer,
        default_resource=settings.default_resource,
        max_ttl=settings.access_token_ttl,
    )


async def revoke_now(
    settings: Settings,
    store: Store,
    *,
    usernames: Iterable[str] | None = None,
    client_id: str | None = None,
) -> int:
    """Revoke the sessions that now hold scope they may no longer have."""
    families = await affected_sessions(
        store,
        issuer=settings.issuer,
        usernames=usernames,
        client_id=client_id,
        console_client_id=settings.console_client_id,
    )
    now = get_clock().now()
    until = now + settings.access_token_ttl + settings.leeway
    return await revoke_families(store, families, now=now, until=until)


def _key_file(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        jwk = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise fail(f"{path}: not a JSON Web Key") from None
    if not isinstance(jwk, dict):
        raise fail(f"{path}: not a JSON Web Key")
    return jwk


def _describe(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in pairs:
        scope, sep, text = item.partition("=")
        if not sep or not scope:
            raise fail(f"--describe takes SCOPE=TEXT, got {item!r}")
        out[scope] = text
    return out


def _scope_map(scopes: str, described: dict[str, str]) -> dict[str, str]:
    names = scopes.split()
    extra = [s for s in described if s not in names]
    if extra:
        raise fail(f"--describe names {extra[0]!r}, which is not in --scopes")
    return {s: described.get(s, "") for s in names}


@resource_app.command("add")
@cli_errors
def resource_add(
    identifier: Annotated[str, typer.Argument(help="Absolute URI; becomes the tokens' aud")],
    name: Annotated[str, typer.Option("--name", help="Display name")],
    scopes: Annotated[str, typer.Option("--scopes", help='Scopes it defines: "a:read a:write"')],
    default_scopes: Annotated[
        str | None, typer.Option("--default-scopes", help="Granted when no scope is asked")
    ] = None,
    access_token_ttl: Annotated[
        str | None, typer.Option("--access-token-ttl", help="e.g. 5m (at most the server's)")
    ] = None,
    encryption_key_file: Annotated[
        Path | None,
        typer.Option("--encryption-key-file", help="Its PUBLIC P-256 JWK: tokens become JWE to it"),
    ] = None,
    describe: Annotated[
        list[str] | None, typer.Option("--describe", help="SCOPE=TEXT (repeatable)")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Register a resource (an API) and the scopes it defines."""
    ttl = parse_duration(access_token_ttl) if access_token_ttl else None
    key = _key_file(encryption_key_file)
    scope_map = _scope_map(scopes, _describe(describe or []))

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        await _resources(settings, st).add(
            identifier,
            name=name,
            scopes=scope_map,
            default_scopes=default_scopes,
            access_token_ttl=ttl,
            encryption_key=key,
        )

    run_with_store(store, go)
    out_console.print(f"created resource {identifier} ({name}): {scopes}")


@resource_app.command("set")
@cli_errors
def resource_set(
    identifier: str,
    name: Annotated[str | None, typer.Option("--name")] = None,
    scopes: Annotated[str | None, typer.Option("--scopes", help="Replaces its scopes")] = None,
    default_scopes: Annotated[str | None, typer.Option("--default-scopes")] = None,
    access_token_ttl: Annotated[
        str | None, typer.Option("--access-token-ttl", help="e.g. 5m; 'default' clears it")
    ] = None,
    encryption_key_file: Annotated[
        Path | None, typer.Option("--encryption-key-file", help="Its PUBLIC P-256 JWK")
    ] = None,
    no_encryption: Annotated[
        bool, typer.Option("--no-encryption", help="Plain signed tokens again")
    ] = False,
    describe: Annotated[list[str] | None, typer.Option("--describe", help="SCOPE=TEXT")] = None,
    store: StoreOpt = None,
) -> None:
    """Change a resource."""
    clear_ttl = access_token_ttl == "default"  # noqa: S105 - a keyword, not a secret
    ttl = parse_duration(access_token_ttl) if access_token_ttl and not clear_ttl else None
    key = _key_file(encryption_key_file)
    scope_map = _scope_map(scopes, _describe(describe or [])) if scopes is not None else None

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        await _resources(settings, st).set(
            identifier,
            name=name,
            scopes=scope_map,
            default_scopes=default_scopes,
            access_token_ttl=ttl,
            encryption_key=key,
            clear_ttl=clear_ttl,
            clear_encryption=no_encryption,
        )

    run_with_store(store, go)
    out_console.print(f"updated resource {identifier}")


@resource_app.command("list")
@cli_errors
def resource_list(store: StoreOpt = None) -> None:
    """List resources (the server's own first) and their scopes."""

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        table = Table("identifier", "name", "scopes", "default", "ttl", "JWE")
        table.add_row(
            settings.issuer,
            "tokenward (this server)",
            "admin revocations ssf openid profile offline_access",
            "openid profile",
            "",
            "",
        )
        for r in await st.list_resources():
            table.add_row(
                r.identifier,
                r.name,
                " ".join(r.scopes),
                " ".join(r.default_scopes),
                f"{r.access_token_ttl}s" if r.access_token_ttl else "",
                "yes" if r.encryption_key else "",
            )
        out_console.print(table)

    run_with_store(store, go)


@resource_app.command("remove")
@cli_errors
def resource_remove(identifier: str, store: StoreOpt = None) -> None:
    """Remove a resource: its scopes are granted no more (sessions narrow at refresh)."""

    async def go(settings: Settings, st: Store) -> None:
        await _resources(settings, st).remove(identifier)

    run_with_store(store, go)
    out_console.print(f"removed resource {identifier}")


def _roles(settings: Settings, st: Store) -> RoleRegistry:
    return RoleRegistry(st, issuer=settings.issuer)


async def _members(st: Store, role: str) -> list[str]:
    return [u.username for u in await st.list_users() if role in u.roles]


@role_app.command("add")
@cli_errors
def role_add(
    name: str,
    scopes: Annotated[str, typer.Option("--scopes", help='e.g. "orders:read orders:write"')],
    description: Annotated[str | None, typer.Option("--description")] = None,
    store: StoreOpt = None,
) -> None:
    """Create a role."""

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        await _roles(settings, st).add(name, scopes, description=description)

    run_with_store(store, go)
    out_console.print(f"created role {name}: {scopes}")


@role_app.command("set")
@cli_errors
def role_set(
    name: str,
    scopes: Annotated[str, typer.Option("--scopes", help="Replaces the role's scopes")],
    now: NowOpt = False,
    store: StoreOpt = None,
) -> None:
    """Replace a role's scopes."""

    async def go(settings: Settings, st: Store) -> int:
        await open_model(settings, st)
        await _roles(settings, st).set(name, scopes)
        if not now:
            return 0
        return await revoke_now(settings, st, usernames=await _members(st, name))

    n = run_with_store(store, go)
    out_console.print(f"updated role {name}" + (f"; revoked {n} session(s)" if now else ""))


@role_app.command("list")
@cli_errors
def role_list(store: StoreOpt = None) -> None:
    """List roles and their members."""

    async def go(settings: Settings, st: Store) -> None:
        await open_model(settings, st)
        table = Table("role", "scopes", "users", "description")
        for r in await st.list_roles():
            table.add_row(
                r.name,
                " ".join(r.scopes),
                ",".join(await _members(st, r.name)),
                r.description or "",
            )
        out_console.print(table)

    run_with_store(store, go)


@role_app.command("remove")
@cli_errors
def role_remove(name: str, now: NowOpt = False, store: StoreOpt = None) -> None:
    """Remove a role (its users lose its scopes)."""

    async def go(settings: Settings, st: Store) -> int:
        await open_model(settings, st)
        members = await _members(st, name)
        await _roles(settings, st).remove(name)
        return await revoke_now(settings, st, usernames=members) if now else 0

    n = run_with_store(store, go)
    out_console.print(f"removed role {name}" + (f"; revoked {n} session(s)" if now else ""))

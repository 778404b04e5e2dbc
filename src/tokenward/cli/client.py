"""``tokenward client add|set|list``: clients and what they may get (resources, scopes)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..server.authz import catalog_of, check_client_permissions
from ..server.clients import ClientRegistry
from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._store import run_with_store
from .authz import open_model, revoke_now

__all__ = ["app"]

app = typer.Typer(help="OAuth clients.", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL")]


@app.command()
@cli_errors
def add(
    client_id: str,
    public: Annotated[bool, typer.Option("--public", help="No secret (apps, SPAs)")] = False,
    grants: Annotated[str, typer.Option(help="Comma-separated grants")] = "refresh_token",
    resources: Annotated[
        str, typer.Option("--resources", help="Comma-separated resources it may ask for")
    ] = "",
    scopes: Annotated[
        str, typer.Option(help="Space-separated scopes it may receive (none: nothing)")
    ] = "",
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    store: StoreOpt = None,
) -> None:
    """Register a client; a confidential client's secret is printed once."""
    resource_list = [r.strip() for r in resources.split(",") if r.strip()]

    async def go(settings: Settings, st: Store) -> str | None:
        await open_model(settings, st)
        check_client_permissions(
            await catalog_of(st, settings.issuer), resource_list, scopes.split()
        )
        _, secret = await ClientRegistry(st, clock=get_clock()).create(
            client_id,
            public=public,
            grants=grants.split(","),
            scopes=scopes.split(),
            name=name,
            resources=resource_list,
        )
        return secret

    secret = run_with_store(store, go)
    out_console.print(f"created {'public' if public else 'confidential'} client {client_id}")
    if not scopes.split():
        out_console.print("note: no --scopes, so this client gets no token until given some")
    if secret is not None:
        out_console.print(f"client_secret: {secret}   (shown once)")


@app.command("set")
@cli_errors
def set_permissions(
    client_id: str,
    resources: Annotated[
        str | None, typer.Option("--resources", help="Comma-separated (replaces them)")
    ] = None,
    scopes: Annotated[
        str | None, typer.Option("--scopes", help="Space-separated (replaces them)")
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Revoke the affected sessions at once (else: at refresh)")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Change the resources and scopes a client may get."""
    resource_list = (
        [r.strip() for r in resources.split(",") if r.strip()] if resources is not None else None
    )
    scope_list = scopes.split() if scopes is not None else None

    async def go(settings: Settings, st: Store) -> int:
        await open_model(settings, st)
        registry = ClientRegistry(st, clock=get_clock())
        before = await registry.get(client_id)
        if before is None:
            raise fail(f"no client {client_id!r}")
        check_client_permissions(
            await catalog_of(st, settings.issuer),
            resource_list if resource_list is not None else list(before.resources),
            scope_list if scope_list is not None else list(before.scopes),
        )
        await registry.set_permissions(client_id, resources=resource_list, scopes=scope_list)
        return await revoke_now(settings, st, client_id=client_id) if now else 0

    n = run_with_store(store, go)
    out_console.print(f"updated client {client_id}" + (f"; revoked {n} session(s)" if now else ""))


@app.command("list")
@cli_errors
def list_clients(store: StoreOpt = None) -> None:
    """List clients (never their secrets)."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("client_id", "type", "grants", "resources", "scopes", "created")
        for c in await st.list_clients():
            table.add_row(
                c.client_id,
                "public" if c.public else "confidential",
                ",".join(c.grants),
                ",".join(c.resources),
                " ".join(c.scopes),
                format_ts(c.created_at),
            )
        out_console.print(table)

    run_with_store(store, go)

"""``tokenward client add|set|list``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from ..server.clients import ClientRegistry
from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, format_ts, get_clock, out_console
from ._store import run_with_store

__all__ = ["app"]

app = typer.Typer(help="OAuth clients.", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL")]


class DPoPMode(StrEnum):
    """RFC 9449 §5.2 ``dpop_bound_access_tokens``: ``required`` = true."""

    REQUIRED = "required"
    OPTIONAL = "optional"


DPoPOpt = Annotated[
    DPoPMode | None,
    typer.Option(
        "--dpop",
        help="DPoP proofs at /token: required (dpop_bound_access_tokens) or optional",
        case_sensitive=False,
    ),
]


@app.command()
@cli_errors
def add(
    client_id: str,
    public: Annotated[bool, typer.Option("--public", help="No secret (apps, SPAs)")] = False,
    grants: Annotated[str, typer.Option(help="Comma-separated grants")] = "refresh_token",
    scopes: Annotated[str, typer.Option(help="Space-separated allowed scopes")] = "",
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    dpop: DPoPOpt = None,
    store: StoreOpt = None,
) -> None:
    """Register a client; a confidential client's secret is printed once."""

    async def go(settings: Settings, st: Store) -> str | None:
        _, secret = await ClientRegistry(st, clock=get_clock()).create(
            client_id,
            public=public,
            grants=grants.split(","),
            scopes=scopes.split(),
            name=name,
            dpop_bound_access_tokens=dpop is DPoPMode.REQUIRED,
        )
        return secret

    secret = run_with_store(store, go)
    out_console.print(f"created {'public' if public else 'confidential'} client {client_id}")
    if secret is not None:
        out_console.print(f"client_secret: {secret}   (shown once)")


@app.command("set")
@cli_errors
def set_client(client_id: str, dpop: DPoPOpt = None, store: StoreOpt = None) -> None:
    """Change a registered client's settings."""
    if dpop is None:
        raise typer.BadParameter("nothing to change; give --dpop required|optional")

    async def go(settings: Settings, st: Store) -> None:
        await ClientRegistry(st, clock=get_clock()).update(
            client_id, dpop_bound_access_tokens=dpop is DPoPMode.REQUIRED
        )

    run_with_store(store, go)
    out_console.print(f"client {client_id}: DPoP {dpop.value}")


@app.command("list")
@cli_errors
def list_clients(store: StoreOpt = None) -> None:
    """List clients (never their secrets)."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("client_id", "type", "grants", "scopes", "dpop", "created")
        for c in await st.list_clients():
            table.add_row(
                c.client_id,
                "public" if c.public else "confidential",
                ",".join(c.grants),
                " ".join(c.scopes),
                "required" if c.dpop_bound_access_tokens else "optional",
                format_ts(c.created_at),
            )
        out_console.print(table)

    run_with_store(store, go)

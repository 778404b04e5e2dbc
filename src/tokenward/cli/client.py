"""``tokenward client add|list``."""

from __future__ import annotations

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


@app.command()
@cli_errors
def add(
    client_id: str,
    public: Annotated[bool, typer.Option("--public", help="No secret (apps, SPAs)")] = False,
    grants: Annotated[str, typer.Option(help="Comma-separated grants")] = "refresh_token",
    scopes: Annotated[str, typer.Option(help="Space-separated allowed scopes")] = "",
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    redirect_uris: Annotated[
        str,
        typer.Option(
            "--redirect-uris",
            help="Comma-separated redirect URIs (authorization_code; matched exactly, "
            "loopback http with any port)",
        ),
    ] = "",
    first_party: Annotated[
        bool, typer.Option("--first-party", help="Trusted app of this server: no consent page")
    ] = False,
    post_logout_redirect_uris: Annotated[
        str,
        typer.Option(
            "--post-logout-redirect-uris", help="Comma-separated RP-initiated logout returns"
        ),
    ] = "",
    backchannel_logout_uri: Annotated[
        str | None,
        typer.Option("--backchannel-logout-uri", help="OpenID Connect back-channel logout URI"),
    ] = None,
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
            redirect_uris=redirect_uris.split(","),
            first_party=first_party,
            post_logout_redirect_uris=post_logout_redirect_uris.split(","),
            backchannel_logout_uri=backchannel_logout_uri,
        )
        return secret

    secret = run_with_store(store, go)
    out_console.print(f"created {'public' if public else 'confidential'} client {client_id}")
    if secret is not None:
        out_console.print(f"client_secret: {secret}   (shown once)")


@app.command("list")
@cli_errors
def list_clients(store: StoreOpt = None) -> None:
    """List clients (never their secrets)."""

    async def go(settings: Settings, st: Store) -> None:
        table = Table("client_id", "type", "grants", "scopes", "redirect URIs", "created")
        for c in await st.list_clients():
            table.add_row(
                c.client_id,
                ("public" if c.public else "confidential")
                + (", first-party" if c.first_party else ""),
                ",".join(c.grants),
                " ".join(c.scopes),
                ",".join(c.redirect_uris),
                format_ts(c.created_at),
            )
        out_console.print(table)

    run_with_store(store, go)

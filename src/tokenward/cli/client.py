"""``tokenward client add|list``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ConfigurationError
from ..server.clients import ClientRegistry, check_usable_grants
from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._output import JsonOpt, Output, OutputOpt, emit
from ._store import DEFAULT_STORE_HELP, run_with_store

__all__ = ["app"]

app = typer.Typer(help="OAuth clients.", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help=DEFAULT_STORE_HELP)]


@app.command()
@cli_errors
def add(
    client_id: str,
    grants: Annotated[
        str,
        typer.Option(
            "--grants",
            help="Comma-separated grants, e.g. password,refresh_token or client_credentials "
            "(refresh_token alone is refused: it cannot obtain a first token).",
            show_default=False,
        ),
    ],
    public: Annotated[bool, typer.Option("--public", help="No secret (apps, SPAs)")] = False,
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
    grant_list = [g.strip() for g in grants.split(",") if g.strip()]
    try:
        check_usable_grants(grant_list, public=public)
    except ConfigurationError as exc:
        raise fail(f"--grants: {exc.description}") from None

    async def go(settings: Settings, st: Store) -> str | None:
        _, secret = await ClientRegistry(st, clock=get_clock()).create(
            client_id,
            public=public,
            grants=grant_list,
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
def list_clients(
    store: StoreOpt = None, output: OutputOpt = Output.table, json: JsonOpt = False
) -> None:
    """List clients (never their secrets)."""

    async def go(settings: Settings, st: Store) -> None:
        rows = [
            {
                "client_id": c.client_id,
                "type": "public" if c.public else "confidential",
                "grants": list(c.grants),
                "scopes": list(c.scopes),
                "name": c.name,
                "first_party": c.first_party,
                "redirect_uris": list(c.redirect_uris),
                "created_at": c.created_at,
            }
            for c in await st.list_clients()
        ]
        show = {
            "grants": ",".join,
            "scopes": " ".join,
            "redirect_uris": ",".join,
            "first_party": lambda v: "yes" if v else "",
            "created_at": format_ts,
        }
        cols = [
            "client_id",
            "type",
            "first_party",
            "grants",
            "scopes",
            "redirect_uris",
            "created_at",
        ]
        emit(
            rows,
            cols,
            output=output,
            json=json,
            labels={"created_at": "created", "first_party": "first-party"},
            show=show,
        )

    run_with_store(store, go, create=False)

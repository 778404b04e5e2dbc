"""``tokenward client add|set|list``."""

from __future__ import annotations

from enum import StrEnum
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
    dpop: DPoPOpt = None,
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

    run_with_store(store, go, create=False)
    out_console.print(f"client {client_id}: DPoP {dpop.value}")


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
                "dpop": "required" if c.dpop_bound_access_tokens else "optional",
                "created_at": c.created_at,
            }
            for c in await st.list_clients()
        ]
        show = {"grants": ",".join, "scopes": " ".join, "created_at": format_ts}
        cols = ["client_id", "type", "grants", "scopes", "dpop", "created_at"]
        emit(rows, cols, output=output, json=json, labels={"created_at": "created"}, show=show)

    run_with_store(store, go, create=False)

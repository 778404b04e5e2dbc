"""``tokenward client add|set|list|disable|enable|remove|rotate-secret``: clients and what
they may get (resources, scopes)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ..errors import ConfigurationError
from ..server.authz import catalog_of, check_client_permissions
from ..server.clients import ClientRegistry, check_usable_grants, require_redirect_uris
from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console, parse_duration
from ._output import JsonOpt, Output, OutputOpt, emit
from ._store import DEFAULT_STORE_HELP, run_with_store
from .authz import open_model, revoke_now

__all__ = ["app"]

_OIDC = "Authorization code and OpenID Connect"
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
    resources: Annotated[
        str, typer.Option("--resources", help="Comma-separated resources it may ask for")
    ] = "",
    scopes: Annotated[
        str, typer.Option(help="Space-separated scopes it may receive (none: nothing)")
    ] = "",
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    redirect_uris: Annotated[
        str,
        typer.Option(
            "--redirect-uris",
            help="Redirect URIs, comma-separated (code flow)",
            rich_help_panel=_OIDC,
        ),
    ] = "",
    first_party: Annotated[
        bool, typer.Option("--first-party", help="No consent page", rich_help_panel=_OIDC)
    ] = False,
    post_logout_redirect_uris: Annotated[
        str,
        typer.Option(
            "--post-logout-redirect-uris",
            help="Logout return URIs, comma-separated",
            rich_help_panel=_OIDC,
        ),
    ] = "",
    backchannel_logout_uri: Annotated[
        str | None,
        typer.Option(
            "--backchannel-logout-uri", help="Back-channel logout URI", rich_help_panel=_OIDC
        ),
    ] = None,
    dpop: DPoPOpt = None,
    store: StoreOpt = None,
) -> None:
    """Register a client; a confidential client's secret is printed once."""
    resource_list = [r.strip() for r in resources.split(",") if r.strip()]
    grant_list = [g.strip() for g in grants.split(",") if g.strip()]
    try:
        check_usable_grants(grant_list, public=public)
    except ConfigurationError as exc:
        raise fail(f"--grants: {exc.description}") from None

    async def go(settings: Settings, st: Store) -> str | None:
        require_redirect_uris(grant_list, redirect_uris.split(","))
        await open_model(settings, st)
        check_client_permissions(
            await catalog_of(st, settings.issuer), resource_list, scopes.split()
        )
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
            resources=resource_list,
            dpop_bound_access_tokens=dpop is DPoPMode.REQUIRED,
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
def set_client(
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
    dpop: DPoPOpt = None,
    store: StoreOpt = None,
) -> None:
    """Change a client: the resources and scopes it may get, its DPoP requirement."""
    if resources is None and scopes is None and dpop is None:
        raise typer.BadParameter("nothing to change; give --resources, --scopes or --dpop")
    resource_list = (
        [r.strip() for r in resources.split(",") if r.strip()] if resources is not None else None
    )
    scope_list = scopes.split() if scopes is not None else None

    async def go(settings: Settings, st: Store) -> int:
        await open_model(settings, st)
        registry = ClientRegistry(st, clock=get_clock())
        before = await registry.get(client_id)
        if before is None:
            raise fail(f"unknown client {client_id!r}")
        if dpop is not None:
            await registry.update(client_id, dpop_bound_access_tokens=dpop is DPoPMode.REQUIRED)
        if resource_list is None and scope_list is None:
            return 0
        check_client_permissions(
            await catalog_of(st, settings.issuer),
            resource_list if resource_list is not None else list(before.resources),
            scope_list if scope_list is not None else list(before.scopes),
        )
        await registry.set_permissions(client_id, resources=resource_list, scopes=scope_list)
        return await revoke_now(settings, st, client_id=client_id) if now else 0

    n = run_with_store(store, go)
    said = [f"DPoP {dpop.value}"] if dpop is not None else []
    if now:
        said.append(f"revoked {n} session(s)")
    out_console.print(f"updated client {client_id}" + (f"; {'; '.join(said)}" if said else ""))


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
                "resources": list(c.resources),
                "scopes": list(c.scopes),
                "name": c.name,
                "first_party": c.first_party,
                "redirect_uris": list(c.redirect_uris),
                "dpop": "required" if c.dpop_bound_access_tokens else "optional",
                "disabled": c.disabled,
                "created_at": c.created_at,
            }
            for c in await st.list_clients()
        ]
        show = {
            "grants": ",".join,
            "resources": ",".join,
            "scopes": " ".join,
            "redirect_uris": ",".join,
            "first_party": lambda v: "yes" if v else "",
            "disabled": lambda d: "yes" if d else "",
            "created_at": format_ts,
        }
        cols = [
            "client_id",
            "type",
            "first_party",
            "grants",
            "resources",
            "scopes",
            "redirect_uris",
            "dpop",
            "disabled",
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


async def _end_sessions(settings: Settings, st: Store, client_id: str) -> int:
    """Revoke every session of ``client_id`` (the feed carries them to every instance)."""
    registry = ClientRegistry(st, clock=get_clock())
    now = get_clock().now()
    until = now + settings.access_token_ttl + settings.leeway
    from ..server.ssf_transmitter import publish_offline

    ended: list[tuple[str, dict[str, object]]] = []
    for sid in await registry.session_ids(client_id):
        event = await st.revoke_family(sid, now=now, reason="client_disabled", until=until)
        if event is not None:
            ended.append(("revoked", {"kind": "sid", "value": sid, "reason": "client_disabled"}))
    await publish_offline(settings, st, ended, clock=get_clock())  # Shared Signals streams
    return len(ended)


def _set_disabled(client_id: str, disabled: bool, store: str | None) -> int:
    async def go(settings: Settings, st: Store) -> int:
        await ClientRegistry(st, clock=get_clock()).set_disabled(client_id, disabled)
        return await _end_sessions(settings, st, client_id) if disabled else 0

    return run_with_store(store, go)


@app.command()
@cli_errors
def disable(client_id: str, store: StoreOpt = None) -> None:
    """Disable a client (refused from now on) and revoke every session it holds."""
    n = _set_disabled(client_id, True, store)
    out_console.print(f"disabled client {client_id}; {n} session(s) revoked")


@app.command()
@cli_errors
def enable(client_id: str, store: StoreOpt = None) -> None:
    """Enable a disabled client."""
    _set_disabled(client_id, False, store)
    out_console.print(f"enabled client {client_id}")


@app.command()
@cli_errors
def remove(client_id: str, store: StoreOpt = None) -> None:
    """Disable a client, revoke its sessions and delete it (not the console's client)."""

    async def go(settings: Settings, st: Store) -> int:
        if client_id == settings.console_client_id:
            raise fail(f"{client_id!r} is the console's client: it cannot be removed")
        registry = ClientRegistry(st, clock=get_clock())
        await registry.set_disabled(client_id, True)
        n = await _end_sessions(settings, st, client_id)
        await registry.delete(client_id)
        return n

    n = run_with_store(store, go)
    out_console.print(f"removed client {client_id}; {n} session(s) revoked")


@app.command("rotate-secret")
@cli_errors
def rotate_secret(
    client_id: str,
    overlap: Annotated[
        str, typer.Option(help="How long the old secret keeps working: 0, 90s, 15m, 1h, 7d")
    ] = "0",
    store: StoreOpt = None,
) -> None:
    """A new secret for a confidential client, printed once."""
    seconds = 0 if overlap.strip() in ("0", "0s") else parse_duration(overlap)

    async def go(settings: Settings, st: Store) -> str:
        registry = ClientRegistry(st, clock=get_clock())
        return await registry.rotate_secret(client_id, overlap=seconds)

    secret = run_with_store(store, go)
    out_console.print(f"client_secret: {secret}   (shown once)")
    if seconds:
        out_console.print(f"the old secret keeps working for {overlap}")
    else:
        out_console.print("the old secret no longer works")

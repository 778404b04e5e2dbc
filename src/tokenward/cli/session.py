"""``tokenward session list SUB`` and ``tokenward session revoke SID``.

``list`` prints whole session ids (``revoke`` needs them), the device and user agent, as a
table or JSON; it never creates a store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..server.settings import Settings
from ..store.base import Store
from ._common import cli_errors, fail, format_ts, get_clock, out_console
from ._output import JsonOpt, Output, OutputOpt, emit
from ._store import DEFAULT_STORE_HELP, run_with_store

__all__ = ["app"]

app = typer.Typer(help="Sessions (refresh-token families).", no_args_is_help=True)
StoreOpt = Annotated[str | None, typer.Option("--store", help=DEFAULT_STORE_HELP)]


@app.command("list")
@cli_errors
def list_sessions(
    sub: str,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked sessions.")] = False,
    store: StoreOpt = None,
    output: OutputOpt = Output.table,
    json: JsonOpt = False,
) -> None:
    """A subject's sessions, newest first."""

    async def go(settings: Settings, st: Store) -> None:
        rows = [
            {
                "session_id": f.sid,
                "client_id": f.client_id,
                "scope": f.scope,
                "device": f.device,
                "user_agent": f.user_agent,
                "ip": f.ip,
                "created_at": f.created_at,
                "last_used_at": f.last_used_at,
                "expires_at": f.expires_at,
                "revoked_at": f.revoked_at,
                "revoked_reason": f.revoked_reason,
            }
            for f in await st.list_families(sub, include_revoked=all_)
        ]
        cols = ["session_id", "client_id", "scope", "device", "user_agent", "ip"]
        cols += ["created_at", "last_used_at", "revoked_reason"]
        labels = {"session_id": "session", "client_id": "client", "user_agent": "user agent",
                  "created_at": "created", "last_used_at": "last used",
                  "revoked_reason": "revoked"}  # fmt: skip
        show = {"created_at": format_ts, "last_used_at": format_ts}
        emit(rows, cols, output=output, json=json, labels=labels, show=show)

    run_with_store(store, go, create=False)


@app.command()
@cli_errors
def revoke(sid: str, store: StoreOpt = None) -> None:
    """Revoke one session (its refresh tokens and, via the feed, its access tokens)."""

    async def go(settings: Settings, st: Store) -> bool:
        now = get_clock().now()
        until = now + settings.access_token_ttl + settings.leeway
        if await st.revoke_family(sid, now=now, reason="cli", until=until) is None:
            return False
        from ..server.ssf_transmitter import publish_offline

        revoked = {"kind": "sid", "value": sid, "reason": "cli"}
        await publish_offline(settings, st, [("revoked", revoked)], clock=get_clock())
        return True

    if not run_with_store(store, go, create=False):
        raise fail(f"no live session {sid}")
    out_console.print(f"revoked session {sid}")

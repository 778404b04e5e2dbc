"""``tokenward token``: issue, inspect (without verifying) and verify access tokens."""

from __future__ import annotations

import base64
import binascii
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.panel import Panel
from rich.table import Table

from ..errors import ConfigurationError, InvalidToken
from ..issuer import Issuer
from ..keys import KeyRing
from ..sessions import REFRESH_TOKEN_PREFIX
from ..verifier import DEFAULT_LEEWAY, Verifier
from ._common import (
    as_json_text,
    cli_errors,
    err_console,
    format_ago,
    format_ts,
    get_clock,
    load_ring,
    out_console,
    parse_duration,
    read_kek,
)

__all__ = ["app"]

app = typer.Typer(help="Access tokens: issue, inspect, verify.")

DEFAULT_ISSUER = "http://127.0.0.1:8000"
_TIME_CLAIMS = ("exp", "iat", "nbf")
_MAX_INPUT = 64 * 1024


def _read_token(token: str) -> str:
    if token == "-":  # noqa: S105 - "-" means stdin
        token = sys.stdin.read(_MAX_INPUT + 1)
    token = token.strip()
    if not token:
        raise ValueError("no token given")
    if len(token) > _MAX_INPUT:
        raise ValueError("token longer than 64 KiB")
    return token


def _decode_segment(seg: str, what: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not base64url JSON") from None


@app.command()
@cli_errors
def issue(
    keys: Annotated[Path, typer.Option("--keys", "-k", help="Key file (private JWKS).")],
    sub: Annotated[str, typer.Option("--sub", help="Subject (user id).")],
    scope: Annotated[str | None, typer.Option("--scope", help="Space-separated scopes.")] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 90s, 15m, 1h, 30d.")] = "15m",
    aud: Annotated[str, typer.Option("--aud", help="Audience.")] = "api",
    iss: Annotated[str, typer.Option("--iss", help="Issuer identifier (URL).")] = DEFAULT_ISSUER,
    client_id: Annotated[str, typer.Option("--client-id", help="client_id claim.")] = "cli",
    sid: Annotated[str | None, typer.Option("--sid", help="Session id claim.")] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option("--kek-file", help="KEK file. Default: $TOKENWARD_KEY_ENCRYPTION_KEY."),
    ] = None,
) -> None:
    """Sign an access token with the key file's active key and print it."""
    seconds = parse_duration(ttl)
    ring = load_ring(keys, kek_file)
    issuer = Issuer(ring, issuer=iss, audience=aud, clock=get_clock())
    typer.echo(
        issuer.issue_access_token(sub=sub, client_id=client_id, scope=scope, sid=sid, ttl=seconds)
    )


@app.command()
@cli_errors
def inspect(
    token: Annotated[str, typer.Argument(help="The token, or - to read it from stdin.")],
) -> None:
    """Decode a token's header and claims WITHOUT verifying anything."""
    value = _read_token(token)
    if value.startswith(REFRESH_TOKEN_PREFIX):
        out_console.print(
            "an opaque refresh token (twr_...): it carries no claims to decode; its session is "
            "known only to the server (POST /introspect, or `tokenward session list`)"
        )
        return
    parts = value.split(".")
    if len(parts) not in (3, 5):
        raise ValueError(f"not a compact JWS/JWE: {len(parts)} segments instead of 3 or 5")
    out_console.print(
        Panel(
            "[bold]NOT VERIFIED[/] - decoded only; signature, issuer, audience and expiry "
            "were not checked. Use `tokenward token verify`.",
            style="bold yellow",
        )
    )
    header = _decode_segment(parts[0], "header")
    out_console.print("[bold]header[/]")
    out_console.print_json(as_json_text(header))
    if len(parts) == 5:
        out_console.print("encrypted (JWE): the claims can only be read with the decryption key")
        return
    claims = _decode_segment(parts[1], "payload")
    out_console.print("[bold]claims[/]")
    out_console.print_json(as_json_text(claims))
    if isinstance(claims, dict):
        now = get_clock().now()
        table = Table(show_header=False, box=None)
        phrases = {
            "exp": ("expires", "expired"),
            "iat": ("issued", "issued"),
            "nbf": ("valid", "valid since"),
        }
        for name in _TIME_CLAIMS:
            ts = claims.get(name)
            if isinstance(ts, int | float) and not isinstance(ts, bool):
                future, past = phrases[name]
                table.add_row(name, format_ts(ts), format_ago(ts, now, future=future, past=past))
        out_console.print(table)


@app.command()
@cli_errors
def verify(
    token: Annotated[str, typer.Argument(help="The token, or - to read it from stdin.")],
    jwks: Annotated[
        str,
        typer.Option(
            "--jwks", help="JWKS file or http(s) URL; a private key file for HS256 tokens."
        ),
    ],
    issuer: Annotated[str, typer.Option("--issuer", help="Expected iss.")],
    audience: Annotated[str, typer.Option("--audience", help="Expected audience.")],
    leeway: Annotated[
        float, typer.Option("--leeway", help="Clock skew allowed, in seconds.")
    ] = DEFAULT_LEEWAY,
    kek_file: Annotated[
        Path | None, typer.Option("--kek-file", help="KEK for an encrypted key file.")
    ] = None,
) -> None:
    """Verify a token: exit 0 and print the claims, or exit 1 with the reason."""
    value = _read_token(token)
    keys = _load_keys(jwks, kek_file)
    v = Verifier(
        keys, issuer=issuer, audience=audience, leeway=leeway, clock=get_clock(), cache_size=0
    )
    try:
        claims = v.verify(value)
    except InvalidToken as exc:
        err_console.print(f"[bold red]invalid:[/] {exc.description}")
        raise typer.Exit(1) from None
    err_console.print("[bold green]valid[/]")
    typer.echo(as_json_text(claims.raw))


def _load_keys(source: str, kek_file: Path | None) -> dict[str, Any] | KeyRing:
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            resp = httpx.get(source, timeout=10.0, follow_redirects=False)
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot fetch JWKS from {source}: {type(exc).__name__}"
            ) from None
    else:
        path = Path(source)
        raw = path.read_bytes()
        if not raw.lstrip().startswith(b"{"):  # an encrypted key file
            return KeyRing.load(path, kek=read_kek(kek_file), clock=get_clock())
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError(f"{path} is not a JSON key set") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("a JWKS needs a 'keys' array")
    return doc

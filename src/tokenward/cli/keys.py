"""``tokenward keys``: generate, list, rotate and export signing keys kept in a key file.

The key file is the private JWKS written by :meth:`tokenward.KeyRing.save`: encrypted as a
compact JWE under a key-encryption key (``--kek-file`` or ``TOKENWARD_KEY_ENCRYPTION_KEY``),
else plain JSON with mode 0600. Private material is never printed; ``export-public`` prints
public keys only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..keys import ALGORITHMS, DEFAULT_ALGORITHM, KeyRing
from ._common import (
    as_json_text,
    cli_errors,
    err_console,
    fail,
    format_ts,
    get_clock,
    load_ring,
    out_console,
    read_kek,
)

__all__ = ["app"]

app = typer.Typer(help="Signing keys: generate, list, rotate, export the public JWKS.")

KeysFile = Annotated[
    Path, typer.Option("--keys", "-k", help="Key file (private JWKS, encrypted or mode 0600).")
]
KekFile = Annotated[
    Path | None,
    typer.Option(
        "--kek-file",
        help="File holding the 32-byte key-encryption key (base64url). "
        "Default: $TOKENWARD_KEY_ENCRYPTION_KEY.",
    ),
]


def _save(ring: KeyRing, path: Path, kek: bytes | None) -> str:
    ring.save(path, kek=kek)
    return "encrypted with the KEK" if kek is not None else "unencrypted, mode 0600"


@app.command()
@cli_errors
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file to write.")],
    alg: Annotated[
        str, typer.Option("--alg", help=f"One of {', '.join(ALGORITHMS)}.")
    ] = DEFAULT_ALGORITHM,
    kek_file: KekFile = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Create a key ring (an active key and a published `next` key) and write it to FILE."""
    if alg not in ALGORITHMS:
        raise fail(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
    if out.exists() and not force:
        raise fail(f"{out} exists; use --force to overwrite it")
    kek = read_kek(kek_file)
    ring = KeyRing.generate(alg, clock=get_clock())
    how = _save(ring, out, kek)
    err_console.print(f"wrote {len(ring)} {alg} keys to {out} ({how})", markup=False)
    err_console.print(f"active kid: {ring.active.kid}", markup=False)


@app.command("list")
@cli_errors
def list_keys(keys: KeysFile, kek_file: KekFile = None) -> None:
    """Show the keys of a key file: kid, alg, state and their times."""
    ring = load_ring(keys, kek_file)
    table = Table(title=f"keys in {keys}")
    for col in ("kid", "alg", "state", "created", "activated", "retired"):
        table.add_column(col, no_wrap=True)
    for k in ring:
        table.add_row(
            k.kid,
            k.alg,
            k.state.value,
            format_ts(k.created_at or None),
            format_ts(k.activated_at),
            format_ts(k.retired_at),
        )
    # never fold a kid: print at the table's natural width even on a narrow terminal
    Console(highlight=False, width=max(out_console.width, 150)).print(table)


@app.command()
@cli_errors
def rotate(keys: KeysFile, kek_file: KekFile = None) -> None:
    """Promote `next` to active, retire the active key, create a new `next` key."""
    kek = read_kek(kek_file)
    ring = KeyRing.load(keys, kek=kek, clock=get_clock())
    old = ring.active.kid
    new = ring.rotate()
    how = _save(ring, keys, kek)
    err_console.print(f"rotated {keys} ({how})", markup=False)
    err_console.print(f"retired: {old}\nactive:  {new.kid}", markup=False)


@app.command("export-public")
@cli_errors
def export_public(keys: KeysFile, kek_file: KekFile = None) -> None:
    """Print the public JWKS (what /.well-known/jwks.json serves) to stdout."""
    ring = load_ring(keys, kek_file)
    jwks = ring.public_jwks()
    if not jwks["keys"]:
        err_console.print("note: symmetric (HS256) keys are never published", markup=False)
    typer.echo(as_json_text(jwks))

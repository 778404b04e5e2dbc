"""``tokenward keys``: the signing keys a server keeps in its store, or a key file.

``list``, ``rotate`` and ``retire`` act on the store's keys (``--store URL``) or on a key file
(``--keys FILE``) — one or the other; with neither, on the configured store (the settings'
``TOKENWARD_STORE_URL``). Running servers pick up a change to the store's keys within a minute.
``kek`` prints a new key-encryption key; ``rekey`` re-encrypts the store's keys under a new KEK
(``--new-kek-file``; the old one as the server gets it: ``--kek-file``,
``TOKENWARD_KEY_ENCRYPTION_KEY`` or the SQLite store's ``.kek`` file). A secret is never an
argument.

The key file is the private JWKS written by :meth:`tokenward.KeyRing.save`: encrypted as a
compact JWE under a key-encryption key (``--kek-file`` or ``TOKENWARD_KEY_ENCRYPTION_KEY``),
else plain JSON with mode 0600. Private material is never printed; ``export-public`` prints
public keys only.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from ..errors import ConfigurationError, NotFound
from ..keys import ALGORITHMS, DEFAULT_ALGORITHM, KeyRing, KeyState
from ..server.settings import Settings, load_settings
from ..store.base import Store
from ._common import (
    as_json_text,
    cli_errors,
    err_console,
    fail,
    format_ts,
    get_clock,
    load_ring,
    read_kek,
    read_kek_file_text,
)
from ._output import JsonOpt, Output, OutputOpt, emit
from ._store import DEFAULT_STORE_HELP, describe_store, run_with_store

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    help="Signing keys of the store (--store) or of a key file (--keys); the KEK.",
    no_args_is_help=True,
)

KeysFile = Annotated[
    Path, typer.Option("--keys", "-k", help="Key file (private JWKS, encrypted or mode 0600).")
]
MaybeKeysFile = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        "-k",
        help="A key file (private JWKS) instead of the store. Not with --store.",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help=DEFAULT_STORE_HELP + " Not with --keys.")
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


def _settings_for(store: str | None, kek_file: Path | None) -> Settings:
    kek = read_kek_file_text(kek_file) if kek_file is not None else None
    return load_settings(store_url=store, key_encryption_key=kek)


def _with_ring(
    store: str | None,
    keys: Path | None,
    kek_file: Path | None,
    change: Callable[[KeyRing], T],
    *,
    write: bool,
) -> T:
    """Run ``change(ring)`` on the store's key set or a key file's, saving it when ``write``."""
    if store is not None and keys is not None:
        raise fail("give --store or --keys, not both")
    if keys is not None:
        kek = read_kek(kek_file)
        ring = KeyRing.load(keys, kek=kek, clock=get_clock())
        result = change(ring)
        if write:
            how = _save(ring, keys, kek)
            err_console.print(f"wrote {keys} ({how})", markup=False)
        return result

    async def go(settings: Settings, st: Store) -> T:
        from ..server.keystore import kek_for_store

        blob = await st.load_keys()
        if blob is None:
            raise ConfigurationError(
                f"the store {describe_store(settings)} has no signing keys yet "
                "(`tokenward serve` creates them on its first start)"
            )
        kek = await kek_for_store(settings, st)
        ring = KeyRing.from_bytes(blob, kek, clock=get_clock())
        result = change(ring)
        if write:
            await st.save_keys(ring.to_bytes(kek))
            err_console.print(
                "saved the store's keys (running servers reload them within a minute)",
                markup=False,
            )
        return result

    return run_with_store(store, go, create=False, settings=_settings_for(store, kek_file))


@app.command("list")
@cli_errors
def list_keys(
    store: StoreOpt = None,
    keys: MaybeKeysFile = None,
    kek_file: KekFile = None,
    output: OutputOpt = Output.table,
    json: JsonOpt = False,
) -> None:
    """Show the signing keys: kid, alg, state and their times (never key material)."""
    ring = _with_ring(store, keys, kek_file, lambda r: r, write=False)
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "state": k.state.value,
            "created_at": k.created_at or None,
            "activated_at": k.activated_at,
            "retired_at": k.retired_at,
        }
        for k in ring
    ]
    labels = {"created_at": "created", "activated_at": "activated", "retired_at": "retired"}
    show = {c: format_ts for c in labels}
    cols = ["kid", "alg", "state", "created_at", "activated_at", "retired_at"]
    emit(rows, cols, output=output, json=json, labels=labels, show=show)


@app.command()
@cli_errors
def rotate(store: StoreOpt = None, keys: MaybeKeysFile = None, kek_file: KekFile = None) -> None:
    """Promote `next` to active, retire the active key, create a new `next` key."""

    def change(ring: KeyRing) -> tuple[str, str]:
        old = ring.active.kid
        return old, ring.rotate().kid

    old, new = _with_ring(store, keys, kek_file, change, write=True)
    err_console.print(f"retired: {old}\nactive:  {new}", markup=False)


@app.command()
@cli_errors
def retire(
    kid: Annotated[str, typer.Argument(help="The kid of a retired key.")],
    store: StoreOpt = None,
    keys: MaybeKeysFile = None,
    kek_file: KekFile = None,
) -> None:
    """Withdraw a retired key now (e.g. after a compromise): it leaves the JWKS and the
    tokens it signed stop verifying. The active key is retired by `rotate`."""

    def change(ring: KeyRing) -> None:
        key = ring.get(kid)
        if key is None:
            raise NotFound(f"no key {kid!r}")
        if key.state is not KeyState.RETIRED:
            raise ConfigurationError(
                f"key {kid} is {key.state.value}; only a retired key can be withdrawn "
                "(`tokenward keys rotate` retires the active one)"
            )
        ring.remove(kid)

    _with_ring(store, keys, kek_file, change, write=True)
    err_console.print(f"withdrew {kid}", markup=False)


@app.command()
@cli_errors
def kek(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write it to this file (mode 0600) instead of stdout."),
    ] = None,
) -> None:
    """Generate a key-encryption key (32 random bytes, base64url)."""
    text = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    if out is None:
        typer.echo(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    err_console.print(f"wrote a new key-encryption key to {out} (mode 0600)", markup=False)


@app.command()
@cli_errors
def rekey(
    new_kek_file: Annotated[
        Path,
        typer.Option("--new-kek-file", help="File holding the new KEK (`tokenward keys kek`)."),
    ],
    store: Annotated[str | None, typer.Option("--store", help=DEFAULT_STORE_HELP)] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option(
            "--kek-file",
            help="File holding the current KEK. Default: $TOKENWARD_KEY_ENCRYPTION_KEY, else "
            "the SQLite store's .kek file.",
        ),
    ] = None,
) -> None:
    """Re-encrypt the store's signing keys under a new key-encryption key."""
    new = read_kek(new_kek_file)
    assert new is not None
    settings = _settings_for(store, kek_file)

    async def go(settings: Settings, st: Store) -> Path | None:
        from ..server.keystore import kek_for_store, kek_path

        blob = await st.load_keys()
        if blob is None:
            raise ConfigurationError(f"the store {describe_store(settings)} has no signing keys")
        old = await kek_for_store(settings, st)
        ring = KeyRing.from_bytes(blob, old, clock=get_clock())
        await st.save_keys(ring.to_bytes(new))
        path = kek_path(settings)
        if path is not None:  # the store's own key file: it must follow
            tmp = path.with_name(path.name + ".new")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.urlsafe_b64encode(new).decode().rstrip("=") + "\n")
            os.replace(tmp, path)
        return path

    path = run_with_store(store, go, create=False, settings=settings)
    if path is not None:
        err_console.print(f"re-encrypted the signing keys; {path} now holds the new KEK")
    else:
        err_console.print(
            "re-encrypted the signing keys; give every server the new KEK "
            "(TOKENWARD_KEY_ENCRYPTION_KEY or --kek-file) before it next starts",
            markup=False,
        )


@app.command("export-public")
@cli_errors
def export_public(keys: KeysFile, kek_file: KekFile = None) -> None:
    """Print the public JWKS (what /.well-known/jwks.json serves) to stdout."""
    ring = load_ring(keys, kek_file)
    jwks = ring.public_jwks()
    if not jwks["keys"]:
        err_console.print("note: symmetric (HS256) keys are never published", markup=False)
    typer.echo(as_json_text(jwks))

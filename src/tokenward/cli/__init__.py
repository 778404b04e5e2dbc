"""The ``tokenward`` command line (typer + rich).

Each concept is a sub-app in its own module, registered here with one line::

    app.add_typer(keys.app, name="keys")

Sub-apps use :mod:`tokenward.cli._common` for the shared pieces: ``cli_errors`` (bad input
gives a one-line message and exit code 2, never a traceback), durations (``90s``, ``15m``,
``1h``, ``30d``), the key-encryption key (``--kek-file`` or ``TOKENWARD_KEY_ENCRYPTION_KEY``;
the CLI reads the environment, library classes never do) and the consoles.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import client, db, demo, keys, serve, session, token, user
from ._help import clean_help

clean_help()

__all__ = ["app", "main"]

app = typer.Typer(
    name="tokenward",
    help="JWT token lifecycle: keys, access tokens, refresh tokens, revocation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"tokenward {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """JWT token lifecycle: keys, access tokens, refresh tokens, revocation."""


# Sub-apps: one line each.
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(token.app, name="token")
app.add_typer(user.app, name="user")
app.add_typer(client.app, name="client")
app.add_typer(session.app, name="session")
app.add_typer(db.app, name="db")
app.command("demo")(demo.demo)


def main() -> None:
    """Console-script entry point (``tokenward = "tokenward.cli:main"``)."""
    app()

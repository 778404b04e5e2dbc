"""Internal. The typer app behind :mod:`tokenward.cli` (see there)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import authz, client, db, demo, keys, serve, session, token, user
from ._help import clean_help

clean_help()

__all__ = ["app"]

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
app.add_typer(authz.resource_app, name="resource")
app.add_typer(authz.role_app, name="role")
app.add_typer(session.app, name="session")
app.add_typer(db.app, name="db")
app.command("demo")(demo.demo)

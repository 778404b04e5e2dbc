"""The ``tokenward`` command line (typer + rich; installed by ``tokenward[server]``).

Each concept is a sub-app in its own module, registered in ``_app.py`` with one line::

    app.add_typer(keys.app, name="keys")

Sub-apps use :mod:`tokenward.cli._common` for the shared pieces: ``cli_errors`` (bad input
gives a one-line message and exit code 2, never a traceback), durations (``90s``, ``15m``,
``1h``, ``30d``), the key-encryption key (``--kek-file`` or ``TOKENWARD_KEY_ENCRYPTION_KEY``;
the CLI reads the environment, library classes never do) and the consoles.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import app

__all__ = ["app", "main"]

INSTALL_HINT = "tokenward: the command line needs the server extra: pip install 'tokenward[server]'"

# what the server extra brings; a missing one of these means the extra is not installed
_SERVER_MODULES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "argon2",
        "fastapi",
        "limits",
        "multipart",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "rich",
        "sqlalchemy",
        "starlette",
        "structlog",
        "typer",
        "uvicorn",
    }
)


def __getattr__(name: str) -> Any:
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point (``tokenward = "tokenward.cli:main"``). Without the server
    extra: one line naming what to install, exit code 2."""
    try:
        from ._app import app
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in _SERVER_MODULES:
            print(INSTALL_HINT, file=sys.stderr)
            raise SystemExit(2) from None
        raise
    app()

"""``tokenward serve``: first start (keys, console client, admin user), then uvicorn.

Every setting comes from :func:`tokenward.server.settings.load_settings` (``TOKENWARD_*``, an
optional TOML file); the options here override them. With ``--workers N`` > 1 uvicorn starts
``N`` processes of :func:`tokenward.server.create_app_from_env`; the store URL is passed on
through ``TOKENWARD_STORE_URL``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..events import configure_logging
from ..server.settings import Settings, load_settings
from ._common import cli_errors, err_console

if TYPE_CHECKING:
    from ..server.runtime import BootstrapReport

__all__ = ["prepare", "serve"]


async def prepare(settings: Settings) -> BootstrapReport:
    """Create/migrate the store and bootstrap it (before starting several workers)."""
    from ..server.runtime import bootstrap
    from ..server.stores import open_store

    store = open_store(settings)
    async with store:
        return await bootstrap(settings, store, generate_admin=True)


@cli_errors
def serve(
    store: Annotated[str | None, typer.Option("--store", help="Store URL")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
) -> None:
    """Run the authorization server."""
    import uvicorn

    settings = load_settings(config, store_url=store, host=host, port=port, workers=workers)
    from ..server.keystore import resolve_kek

    resolve_kek(settings)  # a missing or unreadable KEK stops start-up with one line, here
    configure_logging(json=settings.log_json)
    url = f"http://{settings.host}:{settings.port}"
    if "issuer" not in settings.model_fields_set:  # not set anywhere: the address we serve on
        settings = settings.model_copy(update={"issuer": url})

    def announce(report: BootstrapReport) -> None:
        if report.keys_created:
            err_console.print("created signing keys (encrypted in the store)")
        if report.admin_password is not None:
            err_console.print(
                f"created user [bold]admin[/] with one-time password: "
                f"[bold]{report.admin_password}[/]  (shown once; change it)",
                markup=True,
            )
        err_console.print(f"tokenward listening on {url}  (docs: {url}/docs)")

    if settings.workers == 1:
        # one process: bootstrap inside the app's start-up (one store open, one event loop)
        from ..server import create_app

        app = create_app(settings, generate_admin=True, on_bootstrap=announce)
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="warning", access_log=False
        )
        return
    announce(asyncio.run(prepare(settings)))
    os.environ["TOKENWARD_STORE_URL"] = settings.store_url
    os.environ["TOKENWARD_ISSUER"] = settings.issuer
    if config is not None:
        os.environ["TOKENWARD_CONFIG"] = str(config)
    uvicorn.run(
        "tokenward.server.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
    )

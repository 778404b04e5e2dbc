"""``tokenward serve``: first start (keys, console client, admin user), then uvicorn.

Every setting comes from :func:`tokenward.settings.load_settings` (``TOKENWARD_*``, an
optional TOML file); the options here override them. With ``--workers N`` > 1 uvicorn starts
``N`` processes of :func:`tokenward.server.create_app_from_env`; the store URL is passed on
through ``TOKENWARD_STORE_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from ..settings import Settings, load_settings
from ._common import cli_errors, err_console

__all__ = ["configure_logging", "prepare", "serve"]


def configure_logging(json: bool = True) -> None:
    """structlog → JSON lines on stderr (access log, security events, errors)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def prepare(settings: Settings) -> tuple[bool, str | None]:
    """Create/migrate the store and bootstrap it; returns (keys created, one-time password)."""
    from ..server.runtime import bootstrap, open_store

    store = open_store(settings)
    async with store:
        report = await bootstrap(settings, store, generate_admin=True)
    return report.keys_created, report.admin_password


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
    configure_logging(settings.log_json)
    keys_created, password = asyncio.run(prepare(settings))
    if keys_created:
        err_console.print("created signing keys (encrypted in the store)")
    if password is not None:
        err_console.print(
            f"created user [bold]admin[/] with one-time password: [bold]{password}[/]"
            "  (shown once; change it)",
            markup=True,
        )
    url = f"http://{settings.host}:{settings.port}"
    err_console.print(f"tokenward listening on {url}  (docs: {url}/docs)")
    if settings.workers == 1:
        from ..server import create_app

        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
        return
    os.environ["TOKENWARD_STORE_URL"] = settings.store_url
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

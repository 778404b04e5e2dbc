"""``tokenward serve``: checks, bind, first start (keys, console client, admin user), uvicorn.

Every setting comes from :func:`tokenward.server.settings.load_settings` (``TOKENWARD_*``, an
optional TOML file); the options here override them. Start-up refuses, in one line naming the
setting and exit code 2: a wildcard bind without ``TOKENWARD_ISSUER``, a store it cannot reach
(the driver's reason, no secrets), a key-encryption key that is missing or does not decrypt
the stored keys, an address already in use. The socket is bound before the store is
bootstrapped, so a failed bind never spends the one-time admin password; "listening on" is
printed once the server accepts connections. With ``--workers N`` > 1 uvicorn starts ``N``
processes of :func:`tokenward.server.create_app_from_env` on the socket bound here; the
settings are passed on through the environment.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ConfigurationError, StoreUnavailable
from ..server.logs import configure_logging
from ..server.settings import KEK_ENV, MAX_WORKERS, Settings, load_settings, parse_workers
from ._common import cli_errors, err_console, read_kek_file_text

if TYPE_CHECKING:
    from ..server.runtime import BootstrapReport

__all__ = ["bind_socket", "preflight", "prepare", "serve"]

#: Requests still open this long after SIGTERM/SIGINT are cancelled (streams and long-polls
#: end at once; this bounds anything else).
GRACEFUL_SHUTDOWN_SECONDS = 3


async def preflight(settings: Settings) -> list[str]:
    """Open the store and check the key-encryption key against it before anything is bound
    or created; returns warnings to print. Raises ``ConfigurationError`` with one line."""
    from ..server.keystore import kek_for_store, resolve_kek
    from ..server.stores import open_store

    if settings.shared_store:
        resolve_kek(settings)  # a shared store needs a configured KEK: say so before connecting
    store = open_store(settings)
    try:
        await store.open()
    except StoreUnavailable as exc:
        raise ConfigurationError(f"TOKENWARD_STORE_URL: {exc.description}") from None
    try:
        await kek_for_store(settings, store)
        users = await store.list_users()
    finally:
        await store.close()
    notes: list[str] = []
    if users and not any(u.is_admin and not u.disabled for u in users):
        notes.append(
            "the store has users but no active admin; create one with "
            "`tokenward user add NAME --admin --password-stdin` "
            "(or `tokenward user enable NAME` for a disabled admin)"
        )
    return notes


async def prepare(settings: Settings) -> BootstrapReport:
    """Create/migrate the store and bootstrap it (before starting several workers)."""
    from ..server.runtime import bootstrap
    from ..server.stores import open_store

    store = open_store(settings)
    async with store:
        return await bootstrap(settings, store, generate_admin=True)


async def _mark_shown(settings: Settings) -> None:
    from ..server.runtime import admin_password_shown
    from ..server.stores import open_store

    async with open_store(settings) as store:
        await admin_password_shown(store)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host in ("", "*")


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one line before anything else
    happens (uvicorn serves on it, and its workers inherit it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(
            f"TOKENWARD_PORT: cannot listen on {host}:{port}: {reason}"
        ) from None
    sock.set_inheritable(True)
    return sock


@cli_errors
def serve(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL. Default: TOKENWARD_STORE_URL, else sqlite:///var/tokenward.db "
            "(relative to the working directory).",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address. Default: 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option(help="Port. Default: 8000.")] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            help="Worker processes: a number, or auto (one per CPU core; the production "
            "setting). Default: TOKENWARD_WORKERS, else 1.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option(
            "--kek-file",
            help=f"File holding the key-encryption key (base64url). Default: ${KEK_ENV}.",
        ),
    ] = None,
) -> None:
    """Run the authorization server."""
    overrides: dict[str, Any] = {"store_url": store, "host": host, "port": port}
    overrides["workers"] = _workers_option(workers)
    if kek_file is not None:
        overrides["key_encryption_key"] = read_kek_file_text(kek_file)
    settings = load_settings(config, **overrides)
    if "issuer" not in settings.model_fields_set:
        if _is_wildcard(settings.host):
            raise ConfigurationError(
                f"TOKENWARD_ISSUER: required when binding to {settings.host or '*'} "
                "(tokens name the issuer: give the public URL, e.g. https://auth.example.com)"
            )
        # not set anywhere: the address we serve on
        settings = settings.model_copy(update={"issuer": f"http://{settings.host}:{settings.port}"})
    for note in asyncio.run(preflight(settings)):
        err_console.print(f"warning: {note}", markup=False)
    sock = bind_socket(settings.host, settings.port)
    configure_logging(json=settings.log_json)
    bound = sock.getsockname()
    url = f"http://{settings.host}:{bound[1]}"

    def announce(report: BootstrapReport | None) -> None:
        if report is not None and report.keys_created:
            err_console.print("created signing keys (encrypted in the store)")
        if report is not None and report.admin_password is not None:
            err_console.print(
                f"created user [bold]admin[/] with one-time password: "
                f"[bold]{report.admin_password}[/]  (shown once; change it)",
                markup=True,
            )
        err_console.print(f"tokenward listening on {url}  (docs: {url}/docs)")

    _export(settings, config)
    if settings.workers == 1:
        _serve_one(settings, sock, announce)
    else:
        _serve_many(settings, sock, announce)


def _workers_option(value: str | None) -> int | None:
    """``--workers``: a number of processes (1-``MAX_WORKERS``) or ``auto``."""
    if value is None:
        return None
    workers = parse_workers(value)
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigurationError(
            f"--workers: {value!r} is not a number of processes (1-{MAX_WORKERS}) or auto"
        )
    return workers


def _export(settings: Settings, config: Path | None) -> None:
    """What worker processes (and ``create_app_from_env``) read back."""
    os.environ["TOKENWARD_STORE_URL"] = settings.store_url
    os.environ["TOKENWARD_ISSUER"] = settings.issuer
    if settings.key_encryption_key is not None:
        os.environ[KEK_ENV] = settings.key_encryption_key.get_secret_value()
    if config is not None:
        os.environ["TOKENWARD_CONFIG"] = str(config)


def _serve_one(settings: Settings, sock: socket.socket, announce: Any) -> None:
    """One process: bootstrap inside the app's start-up, announce once it accepts."""
    import uvicorn

    from ..server import create_app
    from ..server.http import serve_options
    from ..server.runtime import admin_password_shown

    reports: list[BootstrapReport] = []
    app = create_app(settings, generate_admin=True, on_bootstrap=reports.append)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                report = reports[0] if reports else None
                announce(report)
                if report is not None and report.admin_password is not None:
                    await admin_password_shown(app.state.runtime.store)

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **serve_options(settings),
    )
    Server(config).run(sockets=[sock])


def _serve_many(settings: Settings, sock: socket.socket, announce: Any) -> None:
    """Several processes: bootstrap here (once), then uvicorn's supervisor on our socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..server.http import serve_options
    from ..server.metrics import prepare_multiprocess

    report = asyncio.run(prepare(settings))
    prepare_multiprocess()
    config = uvicorn.Config(
        "tokenward.server.app:create_app_from_env",
        factory=True,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **serve_options(settings),
    )
    announce(report)
    if report.admin_password is not None:
        asyncio.run(_mark_shown(settings))
    Multiprocess(config, sockets=[sock]).run()

"""``create_app(settings)``: the FastAPI authorization server (thin routes over the core)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from fastapi import FastAPI

from .. import __version__
from ..clock import Clock
from ..events import add_listener
from ..store.base import Store
from . import metrics
from .apidocs import install_docs
from .errors import install_error_handlers
from .fastpath import FastPath, FastPathAPI
from .logs import configure_logging
from .middleware import RequestMiddleware
from .openapi import install_openapi
from .routes import (
    account,
    admin,
    admin_authz,
    authorize,
    consents,
    console,
    device,
    feed,
    introspect,
    login,
    logout,
    revoke,
    sdk,
    sessions,
    ssf,
    token,
    userinfo,
    wellknown,
)
from .runtime import BootstrapReport, Runtime, chain_stop_signals
from .settings import Settings, load_settings
from .ssf_transmitter import EventGate, install_listener

__all__ = ["create_app", "create_app_from_env"]

_DESCRIPTION = (
    "tokenward authorization server: short-lived signed access tokens (RFC 9068), rotating "
    "refresh tokens with reuse detection and an idempotent grace window, revocation "
    "(RFC 7009), introspection (RFC 7662), JWKS and RFC 8414 metadata."
)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    password_hasher: PasswordHasher | None = None,
    generate_admin: bool = False,
    on_bootstrap: Callable[[BootstrapReport], None] | None = None,
) -> FastAPI:
    """Build the app. ``store``/``clock``/``password_hasher`` override what ``settings``
    would build (tests pass a ``MemoryStore``, a ``FrozenClock`` and a cheap hasher).

    On start-up the store is bootstrapped (keys, console client; an ``admin`` user from
    ``TOKENWARD_ADMIN_PASSWORD`` or, with ``generate_admin``, a one-time password) and
    ``on_bootstrap`` receives the report (``tokenward serve`` prints it)."""
    settings = settings if settings is not None else load_settings()
    runtime = Runtime(
        settings,
        store=store,
        clock=clock,
        hasher=password_hasher,
        generate_admin=generate_admin,
        on_bootstrap=on_bootstrap,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        remove = add_listener(runtime.metrics.on_event)
        remove_hub = admin.install_event_hub(app, runtime.clock)
        await runtime.start()
        restore_signals = chain_stop_signals()
        # what start-up built lives as long as the process: out of the collector's sight, so
        # a full collection under traffic scans only what requests made (shorter pauses, p99)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            restore_signals()
            remove_hub()
            remove()
            await runtime.stop()

    app = FastPathAPI(
        title="tokenward",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    install_listener()  # a request's security events become SETs before its response starts
    gate = EventGate(runtime.ssf)
    app.add_middleware(
        RequestMiddleware,
        metrics=runtime.metrics,
        max_body_bytes=settings.max_body_bytes,
        access_log=settings.access_log,
        gate=gate,
    )
    hot = FastPath(
        app.router,  # only reached for a key it has no handler for: never
        handlers={
            ("GET", "/userinfo"): userinfo.fast,
            ("POST", "/introspect"): introspect.fast,
            ("GET", "/healthz"): metrics.fast_healthz,
        },
    )
    app.use_fast_path(
        RequestMiddleware(
            hot,
            metrics=runtime.metrics,
            max_body_bytes=settings.max_body_bytes,
            access_log=settings.access_log,
            gate=gate,  # /userinfo's risk hook may end a session: its events are stored too
        ),
        frozenset(hot.handlers),
    )
    # routes are matched in this order, one by one: the per-request hot paths first (their
    # paths are theirs alone, so the order changes no answer)
    for module in (
        userinfo,
        introspect,
        metrics,
        authorize,
        device,
        logout,
        token,
        revoke,
        wellknown,
        login,
        consents,
        sessions,
        account,
        feed,
        admin,
        admin_authz,
        console,
        sdk,
        ssf,
    ):
        app.include_router(module.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (multi-worker serving): settings from the environment.

    Each worker is a fresh process, so it sets up its own logging as ``tokenward serve`` does.
    """
    from .http import protocol_class

    settings = load_settings()
    configure_logging(json=settings.log_json)
    protocol_class(settings.header_timeout)  # this worker's header timeout
    return create_app(settings)

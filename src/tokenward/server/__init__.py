"""The tokenward authorization server (FastAPI): ``create_app(settings)``.

Importing this package loads nothing heavy: the app (FastAPI) is imported on first use of
:func:`create_app`, so server-side helpers (settings, users, clients) work without it.

Public: :func:`create_app`, :func:`create_app_from_env` and the modules ``settings``,
``users``, ``clients``, ``stores`` (``open_store``), ``grants`` (the grant registry) and
``logs``. The other modules (routes, runtime, middleware, metrics, ...) are internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

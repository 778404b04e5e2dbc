"""Stores, chosen by URL scheme: ``memory://``, ``sqlite:///path.db``, ``redis://``,
``rediss://``, ``postgresql://`` (DESIGN §2).

Backends register lazily so that optional drivers (redis, psycopg) are imported only when
their scheme is used; a missing driver raises ``ConfigurationError`` with an install hint.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import (
    Client,
    Family,
    PurgeCounts,
    RefreshTokenRecord,
    RevocationEvent,
    RevocationKind,
    RotationOutcome,
    RotationResult,
    Store,
    User,
)

__all__ = [
    "Client",
    "Family",
    "PurgeCounts",
    "RefreshTokenRecord",
    "RevocationEvent",
    "RevocationKind",
    "RotationOutcome",
    "RotationResult",
    "Store",
    "User",
    "register_backend",
    "store_from_url",
]

# scheme -> ("module:Class", pip extra or None)
_BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("tokenward.store.memory:MemoryStore", None),
    "sqlite": ("tokenward.store.sql:SQLStore", None),
    "sqlite+aiosqlite": ("tokenward.store.sql:SQLStore", None),
    "postgresql": ("tokenward.store.sql:SQLStore", "postgres"),
    "postgres": ("tokenward.store.sql:SQLStore", "postgres"),
    "postgresql+psycopg": ("tokenward.store.sql:SQLStore", "postgres"),
    "redis": ("tokenward.store.redis:RedisStore", "redis"),
    "rediss": ("tokenward.store.redis:RedisStore", "redis"),
}


def register_backend(scheme: str, target: str, extra: str | None = None) -> None:
    """Register ``"module:Class"`` for a URL scheme (for third-party backends)."""
    _BACKENDS[scheme] = (target, extra)


def store_from_url(url: str, **options: object) -> Store:
    """Build (but do not open) the store for ``url``. Open it with ``await store.open()``
    or ``async with store:``."""
    scheme = urlsplit(url).scheme.lower()
    try:
        target, extra = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigurationError(
            f"unknown store URL scheme {scheme!r}; use one of {known}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f" (pip install 'tokenward[{extra}]')" if extra else ""
        raise ConfigurationError(f"the {scheme}:// store needs {exc.name}{hint}") from None
    cls = getattr(module, cls_name)
    store: Store = cls(url, **options)
    return store

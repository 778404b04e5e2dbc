"""Stores, chosen by URL scheme: ``memory://``, ``sqlite:///path.db``, ``redis://``,
``rediss://``, ``redis+cluster://``, ``postgresql://``.

:data:`BACKENDS` is the one registry: scheme → ``"module:Class"`` (and the pip extra that
brings its driver). No backend module is imported until a URL with its scheme is opened, so
optional drivers (SQLAlchemy, redis, psycopg) load only when used; a missing one raises
``ConfigurationError`` with an install hint. Each backend class declares the same schemes
in its ``schemes`` attribute (a test checks that they agree).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..feed import RevocationEvent, RevocationKind
from .base import (
    AccountStore,
    BaseStore,
    Client,
    Family,
    KeyBlobStore,
    PurgeCounts,
    RefreshTokenRecord,
    RefreshTokenStore,
    RevocationFeedStore,
    RotationOutcome,
    RotationResult,
    SessionStore,
    Store,
    User,
)

__all__ = [
    "BACKENDS",
    "AccountStore",
    "Backend",
    "BaseStore",
    "Client",
    "Family",
    "KeyBlobStore",
    "PurgeCounts",
    "RefreshTokenRecord",
    "RefreshTokenStore",
    "RevocationEvent",
    "RevocationFeedStore",
    "RevocationKind",
    "RotationOutcome",
    "RotationResult",
    "SessionStore",
    "Store",
    "User",
    "load_backend",
    "register_backend",
    "store_from_url",
]


class Backend(NamedTuple):
    target: str  # "module:Class"
    extra: str | None  # the pip extra that installs the backend's driver


_SQL = "tokenward.store.sql:SQLStore"
_REDIS = "tokenward.store.redis:RedisStore"

#: scheme -> backend; the one registry (third parties add theirs with register_backend)
BACKENDS: dict[str, Backend] = {
    "memory": Backend("tokenward.store.memory:MemoryStore", None),
    "sqlite": Backend(_SQL, "server"),
    "sqlite+aiosqlite": Backend(_SQL, "server"),
    "postgresql": Backend(_SQL, "postgres"),
    "postgres": Backend(_SQL, "postgres"),
    "postgresql+psycopg": Backend(_SQL, "postgres"),
    "redis": Backend(_REDIS, "redis"),
    "rediss": Backend(_REDIS, "redis"),
    "redis+cluster": Backend("tokenward.store.redis:RedisClusterStore", "redis"),
}


def register_backend(scheme: str, target: str, extra: str | None = None) -> None:
    """Register ``"module:Class"`` for a URL scheme (for third-party backends)."""
    BACKENDS[scheme] = Backend(target, extra)


def load_backend(scheme: str) -> type[BaseStore]:
    """The class registered for ``scheme`` (imports its module)."""
    try:
        target, extra = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            f"unknown store URL scheme {scheme!r}; use one of {known}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f" (pip install 'tokenward[{extra}]')" if extra else ""
        raise ConfigurationError(f"the {scheme}:// store needs {exc.name}{hint}") from None
    cls: type[BaseStore] = getattr(module, cls_name)
    return cls


def store_from_url(url: str, **options: object) -> Store:
    """Build (but do not open) the store for ``url``. Open it with ``await store.open()``
    or ``async with store:``."""
    cls = load_backend(urlsplit(url).scheme.lower())
    store: Store = cls(url, **options)  # type: ignore[call-arg,assignment]
    return store

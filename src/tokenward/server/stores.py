"""Open the store a server (or a CLI command) is configured for."""

from __future__ import annotations

from ..errors import ConfigurationError
from ..store import store_from_url
from ..store.base import Store
from .settings import Settings

__all__ = ["open_store"]


def open_store(settings: Settings) -> Store:
    db = settings.sqlite_path
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, object] = {}
    if settings.store_scheme != "memory":
        options["timeout"] = settings.store_timeout
    if settings.store_prefix is not None:
        if settings.store_scheme not in ("redis", "rediss", "redis+cluster"):
            raise ConfigurationError("TOKENWARD_STORE_PREFIX: only Redis stores take a key prefix")
        options["prefix"] = settings.store_prefix
    return store_from_url(settings.store_url, **options)

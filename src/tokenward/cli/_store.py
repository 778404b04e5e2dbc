"""Open the configured store for a CLI command.

Commands that change the store create or migrate it on first use (so ``user add`` works before
the first ``serve``); read-only commands (``list``) never create one: a SQLite file that does
not exist is an error naming the path (the default ``sqlite:///var/tokenward.db`` is relative
to the working directory). Every command says on stderr which store it opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError, StoreUnavailable
from ..server.settings import Settings, load_settings
from ..store.base import Store
from ._common import err_console

__all__ = ["DEFAULT_STORE_HELP", "describe_store", "run_with_store"]

DEFAULT_STORE_HELP = (
    "Store URL. Default: TOKENWARD_STORE_URL, else sqlite:///var/tokenward.db "
    "(relative to the working directory)."
)

T = TypeVar("T")


def describe_store(settings: Settings) -> str:
    """The store's URL for people: an absolute SQLite path, never a password."""
    db = settings.sqlite_path
    if db is not None:
        return f"sqlite:///{db.resolve()}"
    parts = urlsplit(settings.store_url)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts)


def run_with_store(
    store_url: str | None,
    fn: Callable[[Settings, Store], Awaitable[T]],
    *,
    create: bool = True,
    settings: Settings | None = None,
) -> T:
    from ..server.stores import open_store

    settings = settings if settings is not None else load_settings(store_url=store_url)
    db = settings.sqlite_path
    if not create and db is not None and not db.exists():
        raise ConfigurationError(
            f"no store at {db.resolve()} (pass --store or set TOKENWARD_STORE_URL; the default "
            "path is relative to the working directory)"
        )
    err_console.print(f"store: {describe_store(settings)}", markup=False)

    async def go() -> T:
        store = open_store(settings)
        try:
            await store.open()
        except StoreUnavailable as exc:
            raise ConfigurationError(f"TOKENWARD_STORE_URL: {exc.description}") from None
        try:
            return await fn(settings, store)
        finally:
            await store.close()

    return asyncio.run(go())

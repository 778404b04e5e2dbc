"""Open the configured store for a CLI command (created or migrated on first use)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..server.settings import Settings, load_settings
from ..store.base import Store

__all__ = ["run_with_store"]

T = TypeVar("T")


def run_with_store(store_url: str | None, fn: Callable[[Settings, Store], Awaitable[T]]) -> T:
    from ..server.stores import open_store

    settings = load_settings(store_url=store_url)

    async def go() -> T:
        async with open_store(settings) as store:
            return await fn(settings, store)

    return asyncio.run(go())

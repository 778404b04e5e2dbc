"""Child-process side of the multi-process SQLite test (kept light: imported by each child)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from tokenward.store import RefreshTokenRecord
from tokenward.store.sql import SQLStore

__all__ = ["open_and_rotate"]

NOW = 1_800_000_000.0


def _h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def open_and_rotate(url: str, barrier: Any, results: Any) -> None:
    """Open the store (migrating it if needed), wait for the others, rotate ``s1/0``."""

    async def go() -> str:
        store = SQLStore(url, timeout=20.0)
        await store.open()
        try:
            await asyncio.to_thread(barrier.wait, 60)
            result = await store.rotate(
                _h("s1/0"),
                RefreshTokenRecord(_h("s1/1"), "s1", NOW + 1),
                now=NOW + 1,
                grace=10.0,
                idle_expires_at=NOW + 1 + 14 * 86_400.0,
                revocation_until=NOW + 901,
            )
            return result.outcome.value
        finally:
            await store.close()

    try:
        outcome = asyncio.run(go())
    except Exception as exc:
        outcome = f"error: {type(exc).__name__}: {exc}"
    results.put(outcome)

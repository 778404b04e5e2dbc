"""The Redis store (redis-py asyncio + Lua scripts).

The public name is :class:`RedisStore`; the modules of this package are internal.
"""

from __future__ import annotations

from .store import RedisStore

__all__ = ["RedisStore"]

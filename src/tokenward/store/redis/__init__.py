"""The Redis store (redis-py asyncio + Lua scripts).

The public names are :class:`RedisStore` and :class:`RedisClusterStore`; the modules of
this package are internal.
"""

from __future__ import annotations

from .store import RedisClusterStore, RedisStore

__all__ = ["RedisClusterStore", "RedisStore"]

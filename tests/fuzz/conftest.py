"""The in-process server fixtures of ``tests/server`` (MemoryStore, FrozenClock, cheap hasher)."""

from server.conftest import server, server_factory  # noqa: F401

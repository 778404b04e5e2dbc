"""The oauth tests reuse the server fixtures (MemoryStore app, frozen clock, TestClient)."""

from __future__ import annotations

from server.conftest import ADMIN_PW, ALICE_PW, Server, server, server_factory

__all__ = ["ADMIN_PW", "ALICE_PW", "Server", "server", "server_factory"]

"""Helpers for testing code that uses tokenward: a frozen clock, throwaway keys, and a ready
:class:`~tokenward.sessions.SessionManager` on an in-memory store::

    from tokenward.testing import FrozenClock, make_session_manager

    async def test_logout_everywhere():
        clock = FrozenClock()
        sessions = await make_session_manager(clock=clock)
        pair = await sessions.start(sub="alice", client_id="web")
        await sessions.revoke_subject("alice")
        clock.advance(1)
        ...

Never use these in production: the keys live only in memory and the store forgets everything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from .clock import FrozenClock
from .issuer import Issuer
from .keys import KeyRing
from .sessions import SessionManager
from .store.base import Store
from .store.memory import MemoryStore

__all__ = [
    "TEST_AUDIENCE",
    "TEST_ISSUER",
    "FrozenClock",
    "MemoryStore",
    "capture_logs",
    "make_issuer",
    "make_session_manager",
    "throwaway_keyring",
]

TEST_ISSUER = "https://tokenward.test"
TEST_AUDIENCE = "api"


def throwaway_keyring(alg: str = "ES256", *, clock: FrozenClock | None = None) -> KeyRing:
    """A fresh in-memory key ring (an active key plus a ``next`` key)."""
    if clock is None:
        return KeyRing.generate(alg)
    return KeyRing.generate(alg, clock=clock)


def make_issuer(
    *,
    clock: FrozenClock | None = None,
    alg: str = "ES256",
    issuer: str = TEST_ISSUER,
    audience: str = TEST_AUDIENCE,
    access_token_ttl: int = 900,
) -> Issuer:
    """An :class:`Issuer` with throwaway keys and a frozen clock."""
    clock = clock if clock is not None else FrozenClock()
    return Issuer(
        throwaway_keyring(alg, clock=clock),
        issuer=issuer,
        audience=audience,
        access_token_ttl=access_token_ttl,
        clock=clock,
    )


async def make_session_manager(
    *,
    clock: FrozenClock | None = None,
    alg: str = "ES256",
    issuer: str = TEST_ISSUER,
    audience: str = TEST_AUDIENCE,
    access_token_ttl: int = 900,
    store: Store | None = None,
    **options: Any,
) -> SessionManager:
    """A :class:`SessionManager` on an opened ``memory://`` store with a :class:`FrozenClock`.

    ``options`` go to :class:`SessionManager` (``grace_period``, ``idle_timeout`` ...). The
    clock is reachable as ``manager.clock``, the store as ``manager.store``.
    """
    clock = clock if clock is not None else FrozenClock()
    if store is None:
        store = MemoryStore("memory://")
    await store.open()
    return SessionManager(
        make_issuer(
            clock=clock,
            alg=alg,
            issuer=issuer,
            audience=audience,
            access_token_ttl=access_token_ttl,
        ),
        store,
        clock=clock,
        **options,
    )


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        entry: dict[str, Any] = {
            "event": getattr(record, "tw_event", record.getMessage()),
            "log_level": record.levelname.lower(),
            "logger": record.name,
        }
        entry.update(getattr(record, "tw_fields", {}))
        self.records.append(entry)


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect what the library logs (``tokenward.*`` loggers) as dicts: ``event``,
    ``log_level``, ``logger`` and the event's fields."""
    handler = _Capture()
    logger = logging.getLogger("tokenward")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)

"""The one registry of store schemes, and the capability split of the store contract."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections import defaultdict

import pytest

from tokenward.errors import ConfigurationError
from tokenward.store import (
    BACKENDS,
    AccountStore,
    KeyBlobStore,
    RefreshTokenStore,
    RevocationFeedStore,
    SessionStore,
    Store,
    load_backend,
    store_from_url,
)


def test_each_backend_class_declares_exactly_its_registered_schemes() -> None:
    by_target: dict[str, set[str]] = defaultdict(set)
    for scheme, backend in BACKENDS.items():
        by_target[backend.target].add(scheme)
    assert len(by_target) == 4  # memory, SQL, Redis, Redis Cluster
    for target, schemes in by_target.items():
        cls = load_backend(next(iter(schemes)))
        module, _, name = target.partition(":")
        assert getattr(importlib.import_module(module), name) is cls
        assert set(cls.schemes) == schemes, target
        assert issubclass(cls, Store)


def test_no_backend_module_is_imported_until_its_url_is_opened() -> None:
    code = (
        "import sys\n"
        "from tokenward.store import store_from_url\n"
        "before = sorted(m for m in sys.modules if m.startswith(('tokenward.store.sql', "
        "'tokenward.store.redis', 'sqlalchemy', 'redis')))\n"
        "store_from_url('memory://')\n"
        "after_memory = sorted(m for m in sys.modules if m.startswith(('tokenward.store.sql', "
        "'tokenward.store.redis', 'sqlalchemy', 'redis')))\n"
        "store_from_url('sqlite:///unused.db')\n"
        "print(before, after_memory, 'tokenward.store.sql' in sys.modules, "
        "'tokenward.store.redis' in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] [] True False"


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown store URL scheme 'nope'.*memory"):
        store_from_url("nope://x")


def test_the_full_store_is_every_capability() -> None:
    assert issubclass(Store, SessionStore) and issubclass(Store, AccountStore)
    assert issubclass(SessionStore, RefreshTokenStore) and issubclass(SessionStore, KeyBlobStore)
    assert issubclass(RefreshTokenStore, RevocationFeedStore)
    assert not issubclass(RevocationFeedStore, AccountStore)


async def test_a_feed_only_store_implements_the_feed_and_drives_a_denylist() -> None:
    """A library user who only follows revocations implements RevocationFeedStore alone."""
    from tokenward.clock import FrozenClock
    from tokenward.feed import RevocationEvent, RevocationKind
    from tokenward.revocation import Denylist

    class FeedOnly(RevocationFeedStore):
        def __init__(self) -> None:
            self.events: list[RevocationEvent] = []

        async def ping(self) -> None:
            return None

        async def add_revocation(
            self, kind: RevocationKind, value: str, *, now: float, until: float
        ) -> RevocationEvent:
            e = RevocationEvent(len(self.events) + 1, kind, value, until, now)
            self.events.append(e)
            return e

        async def revocations_after(
            self, cursor: int, *, now: float, limit: int = 1000
        ) -> list[RevocationEvent]:
            return [e for e in self.events if e.seq > cursor and e.until > now][:limit]

        async def revocation_cursor(self) -> int:
            return len(self.events)

    clock = FrozenClock(1_000.0)
    store = FeedOnly()
    await store.add_revocation(RevocationKind.JTI, "j1", now=clock.now(), until=2_000.0)
    dl = Denylist(clock=clock)
    await dl.load(store)
    assert dl.cursor == 1
    assert dl.is_revoked(jti="j1", sid=None, sub=None, iat=0) is not None

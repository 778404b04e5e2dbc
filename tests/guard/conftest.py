"""Fixtures of the guard tests: the authorization-server stub, a frozen clock, a key ring and an
issuer on it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from support.authstub import AUD, ISS, AuthStub
from tokenward.clock import FrozenClock
from tokenward.issuer import Issuer
from tokenward.keys import KeyRing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # anyio warns when a connect in progress is cancelled by the guard's clean shutdown
    mark = pytest.mark.filterwarnings(
        "ignore:coroutine 'connect_tcp.<locals>.try_connect' was never awaited:RuntimeWarning"
    )
    for item in items:
        if "tests/guard/" in item.nodeid or item.nodeid.startswith("guard/"):
            item.add_marker(mark)


@pytest.fixture
def stub() -> Iterator[AuthStub]:
    s = AuthStub()
    yield s
    s.close()


@pytest.fixture
def fclock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
def ring(fclock: FrozenClock) -> KeyRing:
    return KeyRing.generate("ES256", clock=fclock)


@pytest.fixture
def issuer(ring: KeyRing, fclock: FrozenClock) -> Issuer:
    return Issuer(ring, issuer=ISS, audience=AUD, clock=fclock)

"""Fixtures for every test. Shared helpers live in ``tests/support`` (no test imports another
test module); the third-party vectors in ``tests/vectors``."""

from __future__ import annotations

import pytest

from tokenward.clock import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)

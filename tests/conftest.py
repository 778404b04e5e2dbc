"""Shared fixtures. Test vectors are read from ../shared/vectors (never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tokenward.clock import FrozenClock

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TOKENWARD_SHARED", ROOT.parent / "shared"))
VECTORS = SHARED / "vectors"
REQUIRE_SERVICES = os.environ.get("TOKENWARD_REQUIRE_SERVICES") == "1"


def vectors_path(*parts: str) -> Path:
    p = VECTORS.joinpath(*parts)
    if not p.exists():
        if REQUIRE_SERVICES or os.environ.get("CI"):
            pytest.fail(f"test vectors missing at {p}")
        pytest.skip(f"test vectors not found at {p}")
    return p


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)

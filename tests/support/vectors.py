"""The third-party test vectors kept in ``tests/vectors`` (sources and licences in its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def vectors_path(*parts: str) -> Path:
    """A file of the in-repository vectors; a missing one is a failure, never a skip."""
    p = VECTORS.joinpath(*parts)
    if not p.is_file():
        pytest.fail(f"test vector missing at {p} (see tests/vectors/README.md)")
    return p

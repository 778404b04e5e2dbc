"""The test environment's one policy for missing services and optional modules.

``TOKENWARD_REQUIRE_SERVICES=1`` (CI) turns every "not available here" skip into a failure:
an unreachable Redis or PostgreSQL, a missing driver (``redis``, ``psycopg``), a missing tool
(``atheris``, Chromium, Node). The root ``conftest.py`` also fails any other skip in that mode
unless its reason matches one of :data:`STRUCTURAL_SKIPS`: skips that hold whatever is
installed (a parametrised case that does not apply to one backend, say).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

REQUIRE_SERVICES = os.environ.get("TOKENWARD_REQUIRE_SERVICES") == "1"

#: Reasons (substrings) of the skips that are part of a test's design, not of the machine.
STRUCTURAL_SKIPS: tuple[str, ...] = (
    # test_crash_safety: the transaction-level fault is injected into SQL stores only
    "transaction-level injection is for the SQL backends",
    # test_interop: PyJWT has no separate "Ed25519" algorithm name (the EdDSA case covers it)
    "PyJWT signs Ed25519 keys only under the name EdDSA",
)


def service_missing(reason: str) -> None:
    """Skip, or fail when ``TOKENWARD_REQUIRE_SERVICES=1``."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TOKENWARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """``pytest.importorskip`` that fails instead of skipping when services are required."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        service_missing(f"module {name!r} is not installed: {exc}")
        raise  # unreachable: service_missing always raises


def is_structural(reason: str) -> bool:
    return any(s in reason for s in STRUCTURAL_SKIPS)


SERVICE_BACKENDS = frozenset({"redis", "postgres", "redis-cluster"})


#: Fixtures that open Redis or PostgreSQL whatever the parameters.
SERVICE_FIXTURES = frozenset({"pg_schema", "pg_behind_proxy", "redis_server"})


def needs_services(item: pytest.Item) -> bool:
    """A case parametrised with a Redis or PostgreSQL backend (whatever the parameter's name:
    ``store_factory``, a drill's ``backend_name``, a cluster's backend), or using a fixture of
    :data:`SERVICE_FIXTURES`."""
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec: Any = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(isinstance(v, str) and v in SERVICE_BACKENDS for v in callspec.params.values())


def skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def forbid_skip(report: pytest.TestReport | pytest.CollectReport, *, required: bool) -> None:
    """With ``required`` (``TOKENWARD_REQUIRE_SERVICES=1``) turn a skipped report into a
    failure unless its reason is structural (:data:`STRUCTURAL_SKIPS`)."""
    if not required or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report.longrepr)
    if not is_structural(reason):
        report.outcome = "failed"
        report.longrepr = (
            "skipped with TOKENWARD_REQUIRE_SERVICES=1, and not a structural skip listed in "
            f"tests/support/env.py: {reason}"
        )

"""Fixtures and rules for every test. Shared helpers live in ``tests/support`` (no test imports
another test module); the third-party vectors in ``tests/vectors``.

Rules applied here:

* ``services``: every test that runs on Redis or PostgreSQL carries the marker — set in the
  module, or added here for a parametrised case whose backend is ``redis`` or ``postgres``
  (``store_factory``, ``store``, the drills' backends), so ``-m "not services"`` runs without
  either service.
* ``TOKENWARD_REQUIRE_SERVICES=1`` (CI): a skip is a failure unless its reason is one of the
  structural skips listed in ``support/env.py``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from support.env import REQUIRE_SERVICES, forbid_skip, needs_services
from support.server import server, server_factory  # noqa: F401 - fixtures for every test
from support.stores import (  # noqa: F401 - fixtures for every test
    redis_cluster,
    redis_cluster_url,
    store,
    store_factory,
)
from tokenward.clock import FrozenClock

pytest_plugins = ["pytester"]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item) and item.get_closest_marker("services") is None:
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    forbid_skip(report, required=REQUIRE_SERVICES)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    forbid_skip(report, required=REQUIRE_SERVICES)
    return report

"""Rules of the test suite itself: what is rerun, what may skip in CI, which tests need
services. Each is proved by running a small planted test module with ``pytester``."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.env import forbid_skip, needs_services
from support.reruns import AST_BUG, only_the_cpython_ast_bug

STORE_CONFORMANCE = Path(__file__).resolve().parent / "store" / "test_conformance.py"

PLANTED = """
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from support.reruns import only_the_cpython_ast_bug

calls = itertools.count()


@pytest.mark.flaky(reruns=2, condition=only_the_cpython_ast_bug)
@settings(database=None, derandomize=True, max_examples=5)
@given(st.integers())
def test_fails_once_with_a_plain_assertion(n):
    # fails on the first call only: hypothesis reports a FlakyFailure around an AssertionError
    assert next(calls) > 0


seen = itertools.count()


@pytest.mark.flaky(reruns=2, condition=only_the_cpython_ast_bug)
def test_hits_the_interpreter_bug_once():
    if next(seen) == 0:
        raise SystemError("AST constructor recursion depth mismatch (before=38, after=37)")


@pytest.mark.flaky(reruns=2, condition=only_the_cpython_ast_bug)
def test_always_fails_with_an_assertion():
    assert 1 == 2
"""


def test_a_plain_assertion_failure_is_never_rerun(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_planted=PLANTED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    # the interpreter bug is rerun once and then passes; the two assertion failures are not
    assert outcomes.get("failed") == 2, result.stdout.str()
    assert outcomes.get("passed") == 1, result.stdout.str()
    assert outcomes.get("rerun") == 1, result.stdout.str()
    failed = {ln.split("::")[1].split()[0] for ln in result.stdout.lines if ln.startswith("FAILED")}
    assert failed == {
        "test_fails_once_with_a_plain_assertion",
        "test_always_fails_with_an_assertion",
    }


def test_rerun_condition_matches_only_the_ast_system_error() -> None:
    bug = SystemError(f"{AST_BUG} (before=38, after=37)")
    assert only_the_cpython_ast_bug(bug)
    assert only_the_cpython_ast_bug(ExceptionGroup("flaky", [bug]))
    assert not only_the_cpython_ast_bug(ExceptionGroup("flaky", [bug, AssertionError("x")]))
    assert not only_the_cpython_ast_bug(AssertionError(AST_BUG))
    assert not only_the_cpython_ast_bug(SystemError("some other interpreter error"))
    assert not only_the_cpython_ast_bug(None)


SKIPPED = ("/x/test_a.py", 12, "Skipped: Redis unreachable at redis://127.0.0.1:6379/15")
STRUCTURAL = ("/x/test_b.py", 3, "Skipped: transaction-level injection is for the SQL backends")


def _report(longrepr: object, outcome: str = "skipped") -> pytest.TestReport:
    return pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, outcome, longrepr, "call")


def test_require_services_turns_an_unlisted_skip_into_a_failure() -> None:
    report = _report(SKIPPED)
    forbid_skip(report, required=True)
    assert report.failed and "Redis unreachable" in str(report.longrepr)


def test_require_services_keeps_listed_structural_skips() -> None:
    report = _report(STRUCTURAL)
    forbid_skip(report, required=True)
    assert report.skipped


def test_without_require_services_a_skip_stays_a_skip() -> None:
    report = _report(SKIPPED)
    forbid_skip(report, required=False)
    assert report.skipped


def test_require_services_fails_a_planted_skip_end_to_end(pytester: pytest.Pytester) -> None:
    """The root conftest's hook, as CI runs it: a skipped module-level importorskip and a
    runtime skip both fail; a listed structural skip stays skipped."""
    pytester.makeconftest(
        "import pytest\n"
        "from support.env import forbid_skip\n"
        "@pytest.hookimpl(wrapper=True)\n"
        "def pytest_runtest_makereport(item, call):\n"
        "    report = yield\n"
        "    forbid_skip(report, required=True)\n"
        "    return report\n"
    )
    pytester.makepyfile(
        test_planted="import pytest\n"
        "def test_missing_service():\n"
        "    pytest.skip('PostgreSQL unreachable at postgresql://x')\n"
        "def test_structural():\n"
        "    pytest.skip('transaction-level injection is for the SQL backends')\n"
    )
    outcomes = pytester.runpytest_inprocess("-p", "no:cacheprovider").parseoutcomes()
    assert outcomes.get("failed") == 1 and outcomes.get("skipped") == 1, outcomes


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"store_factory": "postgres"}, True),
        ({"store_factory": "redis"}, True),
        ({"backend_name": "redis", "n": 3}, True),
        ({"store_factory": "sqlite"}, False),
        ({"store_factory": "memory"}, False),
        (None, False),
    ],
)
def test_services_marker_follows_the_backend_parameter(
    params: dict[str, object] | None, expected: bool
) -> None:
    class Item:
        pass

    item = Item()
    item.fixturenames = ["tmp_path"]  # type: ignore[attr-defined]
    if params is not None:
        item.callspec = type("CallSpec", (), {"params": params})()  # type: ignore[attr-defined]
    assert needs_services(item) is expected  # type: ignore[arg-type]


def test_a_postgres_fixture_brings_the_services_marker() -> None:
    class Item:
        fixturenames = ("tmp_path", "pg_schema")

    assert needs_services(Item())  # type: ignore[arg-type]


def test_every_redis_and_postgres_case_carries_the_services_marker(
    pytester: pytest.Pytester,
) -> None:
    """Collected through the real fixtures: the store_factory cases on Redis and PostgreSQL are
    marked, the memory and SQLite ones are not."""
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--co", "-q", "-m", "services", str(STORE_CONFORMANCE)
    )
    ids = [ln for ln in result.stdout.lines if "::" in ln]
    assert ids and all(("[postgres" in i) or ("[redis" in i) for i in ids), ids[:5]
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--co", "-q", "-m", "not services", str(STORE_CONFORMANCE)
    )
    ids = [ln for ln in result.stdout.lines if "::" in ln]
    assert ids and not any(("[postgres" in i) or ("[redis" in i) for i in ids), ids[:5]

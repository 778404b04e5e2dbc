"""Rules of the test suite itself: what is rerun, what may skip in CI, which tests need
services, where a test may bound a time. Each is proved by running a small planted test module
with ``pytester`` or planted source."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.env import forbid_skip, needs_services
from support.reruns import AST_BUG, only_the_cpython_ast_bug
from support.thresholds import time_bounds

TESTS = Path(__file__).resolve().parent
STORE_CONFORMANCE = TESTS / "store" / "test_conformance.py"

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


# -- timing thresholds ---------------------------------------------------------------------
#: The only assertions of the suite that bound an elapsed time: documented behaviour (a hang
#: must fail) or a test's own precondition, each with a margin far above a loaded machine's
#: needs (``support.wait.HANG``). Speed claims live in ``bench/`` as ratios against a peer in
#: the same run; a new entry here needs a reason of the first two kinds, never "it is fast".
TIME_BOUNDS_ALLOWED: dict[tuple[str, str], str] = {
    ("server/test_operator_lifecycle.py",
     "test_sigterm_ends_sse_and_long_poll_and_exits_within_bound"):
        "behaviour (docs/server.md, Shutdown): SIGTERM exits with clients open, not after them",
    ("server/test_fail_closed.py", "_timed"):
        "behaviour (docs/security.md, Store outage): every answer bounded by the store timeout",
    ("store/test_fail_closed.py", "_assert_fails_fast"):
        "behaviour (docs/security.md, Store outage): every store call bounded by its timeout",
    ("store/sql/test_sql.py", "test_unreachable_postgres_is_store_unavailable_within_timeout"):
        "behaviour (docs/stores.md): every call is bounded by the store timeout",
    ("store/sql/test_sql.py", "test_silent_postgres_does_not_hang"):
        "behaviour (docs/stores.md): a silent server is bounded by connect_timeout, not a hang",
    ("store/redis/test_redis_store.py", "test_follower_xread_block_wakes_on_a_revocation"):
        "behaviour (docs/stores-redis.md): a follower's wait ends at its timeout",
    ("store/redis/test_redis_store.py", "test_refused_connection_fails_closed_within_the_timeout"):
        "behaviour (docs/stores-redis.md): every call is bounded by the timeout",
    ("drills/test_throttle_fails_closed.py", "test_silent_throttle_storage_is_bounded"):
        "behaviour (docs/security.md, Store outage): the login throttle never hangs a request",
    ("drills/test_crash.py", "test_kill9_under_load"):
        "precondition: the restart fits the refresh grace window the drill then checks",
    ("server/test_multi_instance.py",
     "test_grace_replay_across_instances_then_reuse_revokes_everywhere"):
        "precondition: the replay happened inside the real-time grace window",
    ("server/test_multi_instance.py",
     "test_fifty_refreshes_of_one_token_over_three_instances_get_one_successor"):
        "precondition: the 50-way race happened inside the real-time grace window",
}  # fmt: skip


def _time_bounds_in_suite() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        for function, line in time_bounds(path.read_text(encoding="utf-8")):
            found.setdefault((rel, function), []).append(line)
    return found


def test_no_timing_threshold_outside_the_documented_behaviours() -> None:
    """``assert elapsed < bound`` only where the allow-list says which behaviour or
    precondition it states; and the allow-list holds no entry that no longer bounds a time."""
    found = _time_bounds_in_suite()
    unlisted = {f"{path}::{fn} (line {lines[0]})" for (path, fn), lines in found.items()
                if (path, fn) not in TIME_BOUNDS_ALLOWED}  # fmt: skip
    assert not unlisted, (
        "timing thresholds in tests (measure speed in bench/, as a ratio against a peer in "
        f"the same run; a behaviour's bound goes into TIME_BOUNDS_ALLOWED): {sorted(unlisted)}"
    )
    stale = set(TIME_BOUNDS_ALLOWED) - set(found)
    assert not stale, f"allowed but no longer bounding a time: {sorted(stale)}"


PLANTED_BOUNDS = """
import time
from time import perf_counter


def test_inline():
    t0 = time.perf_counter()
    work()
    assert time.perf_counter() - t0 < 0.1


def test_named():
    start = time.monotonic()
    work()
    elapsed = time.monotonic() - start
    assert elapsed <= 0.05, f"took {elapsed}"


def test_from_import_and_reversed():
    t0 = perf_counter()
    work()
    took_ms = (perf_counter() - t0) * 1000
    assert 100 > took_ms


def test_nested():
    def bounded(fn):
        t0 = time.process_time()
        fn()
        assert time.process_time() - t0 < 0.1

    bounded(work)


def test_deadline_is_a_liveness_wait():
    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline, "did not start"


def test_no_clock():
    a, b = 3, 1
    assert a - b < 5
"""


def test_the_threshold_finder_flags_elapsed_bounds_not_deadlines() -> None:
    found = time_bounds(PLANTED_BOUNDS)
    assert [fn for fn, _ in found] == [
        "test_inline",
        "test_named",
        "test_from_import_and_reversed",
        "bounded",
    ]

"""The one rerun rule of the suite: a test is run again only when it failed with CPython
3.11's ``ast`` ``SystemError`` ("AST constructor recursion depth mismatch"), an interpreter bug
that hypothesis can hit deep inside generation (it parses the source of schemathesis's lambdas
to describe them). Any other failure, including a hypothesis ``FlakyFailure`` around a plain
assertion, fails at once.

    @pytest.mark.flaky(reruns=2, condition=only_the_cpython_ast_bug)
"""

from __future__ import annotations

from collections.abc import Iterator

AST_BUG = "AST constructor recursion depth mismatch"


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):  # hypothesis's FlakyFailure is one
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def only_the_cpython_ast_bug(error: BaseException | None) -> bool:
    """True when ``error`` is that ``SystemError``, or a group of nothing but it."""
    if error is None:
        return False
    leaves = list(_leaves(error))
    return bool(leaves) and all(isinstance(e, SystemError) and AST_BUG in str(e) for e in leaves)

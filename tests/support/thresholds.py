"""Finds timing thresholds in test code: an ``assert`` that compares an elapsed time (a
difference of clock readings: ``time.monotonic()``, ``time.perf_counter()``,
``time.process_time()``, ``time.time()`` and their ``_ns`` forms) with a bound.

``tests/test_suite_rules.py`` runs it over the suite: such an assertion is allowed only where it
states a documented behaviour or a test's precondition (its allow-list says which and why);
speed is measured in ``bench/``. A deadline check (``assert time.monotonic() < deadline``) is a
liveness wait, not a threshold, and is not reported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

__all__ = ["CLOCKS", "time_bounds"]

CLOCKS = frozenset(
    {
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
        "process_time_ns",
        "thread_time",
        "time",
        "time_ns",
    }
)


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if isinstance(f, ast.Attribute):  # time.monotonic()
        return f.attr in CLOCKS and isinstance(f.value, ast.Name) and f.value.id == "time"
    return isinstance(f, ast.Name) and f.id in CLOCKS - {"time"}  # from time import perf_counter


def _names(node: ast.AST) -> Iterator[str]:
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            yield n.id


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        return [n for t in node.targets for n in _names(t)]
    if isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
        return list(_names(node.target))
    return []


def _value(node: ast.AST) -> ast.AST | None:
    return getattr(node, "value", None)


class _Scope:
    """The clock readings and elapsed times named in one function (or the module body)."""

    def __init__(self, body: ast.AST) -> None:
        self.readings: set[str] = set()
        self.elapsed: set[str] = set()
        nodes = [n for n in ast.walk(body) if _targets(n) and _value(n) is not None]
        for _ in range(3):  # names defined from names: a few passes reach a fixed point
            for n in nodes:
                value = _value(n)
                assert value is not None
                if self.measures(value):
                    self.elapsed.update(_targets(n))
                elif any(_is_clock_call(v) for v in ast.walk(value)):
                    self.readings.update(_targets(n))

    def _clocky(self, node: ast.AST) -> bool:
        return any(
            _is_clock_call(n) or (isinstance(n, ast.Name) and n.id in self.readings)
            for n in ast.walk(node)
        )

    def measures(self, node: ast.AST) -> bool:
        """Does ``node`` contain an elapsed time (a difference with a clock reading in it)?"""
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in self.elapsed:
                return True
            if (
                isinstance(n, ast.BinOp)
                and isinstance(n.op, ast.Sub)
                and (self._clocky(n.left) or self._clocky(n.right))
            ):
                return True
        return False


def _bounds(test: ast.AST, scope: _Scope) -> bool:
    for n in ast.walk(test):
        if (
            isinstance(n, ast.Compare)
            and any(isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in n.ops)
            and any(scope.measures(side) for side in (n.left, *n.comparators))
        ):
            return True
    return False


def time_bounds(source: str) -> list[tuple[str, int]]:
    """``(function, line)`` of every assertion in ``source`` that bounds an elapsed time."""
    tree = ast.parse(source)
    found: list[tuple[str, int]] = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for fn in functions:
        scope = _Scope(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assert) and _bounds(node.test, scope):
                found.append((fn.name, node.lineno))
    # an assertion inside a nested function is reported once, under the innermost function
    seen: dict[int, str] = {}
    for name, line in found:
        seen[line] = name
    return sorted({(name, line) for line, name in seen.items()}, key=lambda x: x[1])

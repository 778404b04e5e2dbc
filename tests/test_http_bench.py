"""``bench/http_bench.py`` without servers: the goal verdicts, failed cells and the wrk Lua.

The benchmark itself (five servers, wrk) is ``make bench-http``; here only the parts that turn
figures into PASS/MISS and requests into Lua, which a wrong sign or a broken template would
silently falsify.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "http_bench.py"


@pytest.fixture(scope="module")
def hb() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_bench_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def cells(hb: ModuleType, rps: dict[tuple[str, str], float], p99: dict[tuple[str, str], float]):
    out = {}
    for key in hb.CELLS:
        cell = hb.Cell(*key)
        r = rps.get(key, 100.0)
        cell.runs.append(hb.Run(int(r * 10), 0, 0, 10.0, 1.0, p99.get(key, 50.0), 0.0))
        out[key] = cell
    return out


def verdicts(hb: ModuleType, rows: list[tuple[str, str, str, str]]) -> dict[str, str]:
    return {goal: verdict for goal, _, _, verdict in rows}


def test_ratio_goals_pass_at_the_target_and_miss_below(hb: ModuleType) -> None:
    tw, fje, sj, floor, redis = hb.TW, hb.FJE, hb.SJ, hb.FLOOR, hb.TW_REDIS
    rps = {
        ("protected", tw): 200.0,
        ("protected", fje): 100.0,  # exactly 2×: PASS
        ("protected", floor): 400.0,  # exactly within 2×: PASS
        ("introspect", tw): 199.0,
        ("introspect", fje): 100.0,  # 1.99×: MISS
        ("refresh", tw): 100.0,
        ("refresh", redis): 150.0,
        ("refresh", fje): 100.0,  # SQLite 1× PASS, Redis 1.5× < 2× MISS
        ("refresh", sj): 10.0,  # SQLite 10× PASS, Redis 15× PASS
    }
    v = verdicts(hb, hb.goals(cells(hb, rps, {})))
    assert v["protected: tokenward /userinfo ÷ fje"] == "PASS"
    assert v["introspect: tokenward /introspect ÷ fje"] == "MISS"
    assert v["floor: tokenward /userinfo ÷ ASGI floor"] == "PASS"
    assert v["floor: tokenward /introspect ÷ ASGI floor"] == "MISS"  # 199 < 400 / 2
    assert v["refresh: tokenward SQLite ÷ fje stateless"] == "PASS"
    assert v["refresh: tokenward Redis ÷ fje stateless"] == "MISS"
    assert v["refresh: tokenward SQLite ÷ simplejwt"] == "PASS"
    assert v["refresh: tokenward Redis ÷ simplejwt"] == "PASS"
    assert v["sign-in: tokenward password grant"] == "—"


def test_p99_goal_needs_tokenward_lowest_of_the_three(hb: ModuleType) -> None:
    p99 = {
        ("protected", hb.TW): 9.0,
        ("protected", hb.FJE): 10.0,
        ("protected", hb.SJ): 30.0,
        ("introspect", hb.TW): 12.0,
        ("introspect", hb.FJE): 20.0,
        ("introspect", hb.SJ): 11.0,  # simplejwt lower: MISS
    }
    rows = hb.goals(cells(hb, {}, p99))
    v = verdicts(hb, rows)
    assert v["p99 protected: tokenward vs lowest peer"] == "PASS"
    assert v["p99 introspect: tokenward vs lowest peer"] == "MISS"
    measured = {goal: m for goal, m, _, _ in rows}
    assert "(simplejwt)" in measured["p99 introspect: tokenward vs lowest peer"]


def test_a_cell_with_errors_is_marked_failed(hb: ModuleType) -> None:
    table = cells(hb, {}, {})
    table[("refresh", hb.TW)].runs[0].non2xx = 3
    text = hb.cells_table(table)
    assert "**3 FAILED**" in text
    assert text.count("FAILED") == 1


def test_lua_for_a_rotating_chain(hb: ModuleType) -> None:
    req = hb.Req(
        "POST",
        "/token",
        {"Content-Type": hb.FORM},
        "grant_type=refresh_token&refresh_token={token}",
        "refresh_token",
        ("a", "b"),
    )
    lua = hb.lua_script(req)
    assert "function request()" in lua  # a request per send, from this connection's token
    assert 'local successor = "refresh_token"' in lua
    assert '"grant_type=refresh_token&refresh_token={token}"' in lua
    assert "%s*" in lua and "%%" not in lua  # the Python template's escapes are gone
    fixed = hb.lua_script(hb.Req("GET", "/userinfo", {"Authorization": "Bearer x"}))
    assert "local successor = nil" in fixed


def test_lua_strings_escape_quotes_backslashes_and_controls(hb: ModuleType) -> None:
    assert hb.lua_str('a"b\\c\nd') == '"a\\034b\\092c\\010d"'
    assert hb.lua_str("é") == '"\\195\\169"'  # UTF-8 bytes


def test_a_goal_ratio_is_the_median_of_same_round_ratios_with_their_range(hb: ModuleType) -> None:
    table = cells(hb, {}, {})
    tw, fje = table[("protected", hb.TW)], table[("protected", hb.FJE)]
    tw.runs = [hb.Run(r, 0, 0, 1.0, 1.0, 1.0, 0.0) for r in (100, 300, 250)]
    fje.runs = [hb.Run(r, 0, 0, 1.0, 1.0, 1.0, 0.0) for r in (100, 100, 50)]  # 1×, 3×, 5×
    for key in hb.CELLS:
        if key not in {("protected", hb.TW), ("protected", hb.FJE)}:
            table[key].runs *= 3
    rows = {goal: (m, v) for goal, m, _, v in hb.goals(table)}
    measured, verdict = rows["protected: tokenward /userinfo ÷ fje"]
    assert measured == "3.00× (rounds 1.00–5.00)"  # not 650/250 = 2.6× of the totals
    assert verdict == "PASS"

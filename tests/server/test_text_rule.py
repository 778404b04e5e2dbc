"""The edge rule for text (``tokenward.server.text``): its ASCII shortcut answers as the full
check does."""

from __future__ import annotations

import re

import pytest

from tokenward.server.text import bad_text

_FULL = re.compile("[\x00\ud800-\udfff]")


def _full(value: str) -> str | None:
    m = _FULL.search(value)
    if m is None:
        return None
    return "a NUL character" if m.group() == "\x00" else "a lone surrogate"


@pytest.mark.parametrize(
    "value",
    ["", "token", "a" * 700, "a\x00b", "\x00", "é", "é\x00", "ok\ud800", "\udfff", "日本\x00語"],
)
def test_ascii_shortcut_agrees_with_the_full_check(value: str) -> None:
    assert bad_text(value) == _full(value)

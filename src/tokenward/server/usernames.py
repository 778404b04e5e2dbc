"""The one username rule, for the CLI, the admin API and the console.

A username is 1–64 characters of Unicode letters, decimal digits and ``.``, ``_``, ``-``,
``@``, after NFKC normalisation. Names are compared after NFKC + case folding, and a new
user is stored under that canonical form (:func:`canonical_username`): ``Alice``, ``ALICE``
and ``ａｌｉｃｅ`` (full-width) are one account, ``alice``. Nothing in a name can break a URL
path, a log line or a Basic header.

Records made before this rule may violate it or collide after folding; they are listed at
start-up (:func:`username_report`), and each keeps signing in by its exact stored name (the
exact name is looked up first) until an administrator renames or removes it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ..errors import ConfigurationError

__all__ = [
    "MAX_USERNAME",
    "USERNAME_RULE",
    "canonical_username",
    "fold",
    "username_report",
    "valid",
]

MAX_USERNAME = 64
USERNAME_RULE = "a username is 1-64 Unicode letters, digits and . _ - @"
_PUNCT = frozenset("._-@")


def fold(name: str) -> str:
    """The comparison form: NFKC, then case folding (then NFKC again, as folding can
    denormalise)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _allowed(ch: str) -> bool:
    if ch in _PUNCT:
        return True
    cat = unicodedata.category(ch)
    return cat.startswith("L") or cat == "Nd"


def valid(name: str) -> bool:
    n = unicodedata.normalize("NFKC", name)
    return 1 <= len(n) <= MAX_USERNAME and all(_allowed(c) for c in n)


def canonical_username(name: str) -> str:
    """The stored form of a new username; ``ConfigurationError`` naming the rule when it
    breaks it."""
    if not isinstance(name, str) or not valid(name):
        raise ConfigurationError(USERNAME_RULE)
    folded = fold(name)
    if not valid(folded):  # folding can lengthen a name (ß → ss)
        raise ConfigurationError(USERNAME_RULE)
    return folded


def username_report(names: Iterable[str]) -> tuple[list[str], list[list[str]]]:
    """Stored names that break the rule, and groups of names equal after folding."""
    invalid: list[str] = []
    groups: dict[str, list[str]] = {}
    for name in names:
        if not valid(name):
            invalid.append(name)
        groups.setdefault(fold(name), []).append(name)
    collisions = [sorted(g) for g in groups.values() if len(g) > 1]
    return invalid, sorted(collisions)

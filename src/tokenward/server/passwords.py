"""The one password policy of the server, the CLI and the console.

A new password (creating a user, an admin reset, ``tokenward user passwd``, a self-service
change) has 8 to 1024 bytes (NIST SP 800-63B §5.1.1.2: at least 8, no composition rules) and is
not one of the most common passwords of the list shipped in ``data/common-passwords.txt``
(compared case-insensitively); the username itself is refused too.
"""

from __future__ import annotations

import functools
from importlib import resources

from ..errors import InvalidRequest

__all__ = ["MAX_PASSWORD_BYTES", "MIN_PASSWORD_LENGTH", "WeakPassword", "check_password"]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 1024  # argon2 takes any length; the cap bounds the work per request


class WeakPassword(InvalidRequest):
    """A new password that the policy refuses (400 ``invalid_request``)."""


@functools.cache
def _common() -> frozenset[str]:
    text = resources.files("tokenward.server").joinpath("data/common-passwords.txt").read_text()
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def check_password(password: str, *, username: str | None = None) -> None:
    """Raise :class:`WeakPassword` with the reason when ``password`` breaks the policy."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_BYTES} bytes")
    folded = password.strip().lower()
    if folded in _common():
        raise WeakPassword("this password is one of the most common ones; choose another")
    if username is not None and folded == username.strip().lower():
        raise WeakPassword("the password must not be the username")

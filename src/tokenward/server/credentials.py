"""The credential watermark: a user's sessions end when their credentials change, even a
session whose login was checking the old password at that very moment.

Each user record carries (in ``User.attributes``, every store keeps them):

* ``credential_version`` — an integer bumped by every password change, reset and disable;
* ``sessions_not_before`` — when that happened: a session (family) created earlier is dead.

Disabling a user or resetting a password bumps both (:func:`bump`) *before* revoking the
user's sessions. Two checks close the race with a login that passed its password check just
before the change:

* :func:`confirm_session` right after ``SessionManager.start()``: the user is read again, and
  if its ``credential_version`` is no longer the one the password was checked against (or it
  is disabled now), the new session is revoked at once (a ``sid`` revocation, so every
  instance's in-memory denylist refuses its access tokens: ``/userinfo`` and introspection
  need no store read for it) and the login fails with ``invalid_grant``. Either the login
  re-reads after the change (and revokes itself) or its family existed before the change's
  ``revoke_subject`` ran (and was revoked by it): both orders are closed.
* :func:`family_check` on every refresh (before rotating): the subject must exist, be enabled,
  and the family must not predate ``sessions_not_before``.

Any other flow that starts a session for a user it authenticated (authorization code, device
flow) calls :func:`confirm_session` with the user record it authenticated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InvalidGrant
from ..store.base import AccountStore, Family, User

if TYPE_CHECKING:
    from ..sessions import SessionManager
    from ..store.base import Store

__all__ = [
    "bump",
    "confirm_session",
    "credential_version",
    "family_check",
    "session_refusal",
    "sessions_not_before",
    "users_read",
]

VERSION = "credential_version"
NOT_BEFORE = "sessions_not_before"

# the user records :func:`family_check` read within :func:`users_read` (by username)
_READ: ContextVar[dict[str, User] | None] = ContextVar("tokenward_users_read", default=None)


@contextlib.contextmanager
def users_read() -> Iterator[dict[str, User]]:
    """Within the block, :func:`family_check` keeps each user record it read (and found
    fit) in the yielded dict, so that the rest of the same refresh decides on that record
    instead of reading it again."""
    seen: dict[str, User] = {}
    token = _READ.set(seen)
    try:
        yield seen
    finally:
        _READ.reset(token)


def credential_version(user: User) -> int:
    return int(user.attributes.get(VERSION, 0))


def sessions_not_before(user: User) -> float:
    return float(user.attributes.get(NOT_BEFORE, 0.0))


def bump(user: User, now: float) -> User:
    """``user`` with a new credential version and ``sessions_not_before = now``."""
    attributes = {
        **user.attributes,
        VERSION: credential_version(user) + 1,
        NOT_BEFORE: max(now, sessions_not_before(user)),
    }
    return replace(user, attributes=attributes)


def session_refusal(
    user: User | None, *, seen_version: int | None = None, created_at: float | None = None
) -> str | None:
    """Why a session of ``user`` must not live, or ``None``: no such user, disabled, the
    credentials changed since ``seen_version`` was read, or the session was created
    (``created_at``) before ``sessions_not_before``."""
    if user is None:
        return "no such user"
    if user.disabled:
        return "user disabled"
    if seen_version is not None and credential_version(user) != seen_version:
        return "credentials changed"
    if created_at is not None and created_at < sessions_not_before(user):
        return "credentials changed"
    return None


async def confirm_session(sessions: SessionManager, authenticated: User, sid: str) -> None:
    """After ``start()``: re-read the user; if its credentials changed since ``authenticated``
    was read, revoke session ``sid`` and raise ``InvalidGrant``."""
    store = sessions.store
    if not isinstance(store, AccountStore):
        raise ConfigurationError("the session store keeps no users")
    current = await store.get_user(authenticated.username)
    why = session_refusal(current, seen_version=credential_version(authenticated))
    if why is not None:
        await sessions.revoke_session(sid, reason="credentials_changed")
        raise InvalidGrant("invalid username or password")


def family_check(store: Store) -> FamilyCheck:
    """The ``SessionManager(family_check=...)`` of the server: every refresh re-reads the
    family's user (one store read; kept for the rest of the refresh, see :func:`users_read`)."""

    async def check(family: Family) -> None:
        user = await store.get_user(family.sub)
        why = session_refusal(user, created_at=family.created_at)
        if why is not None:
            raise InvalidGrant(f"refresh token revoked ({why})")
        seen = _READ.get()
        if seen is not None and user is not None:
            seen[user.username] = user

    return check


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    FamilyCheck = Callable[[Family], Awaitable[None]]

"""User accounts: argon2id password hashes (argon2-cffi), rehash on login, disable.

Authentication takes about the same time whether or not the user exists: an unknown or
disabled user is checked against a dummy hash made with the same parameters, so a failed
login costs one argon2id verification either way (OWASP Authentication Cheat Sheet).
Hashing runs in a worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..clock import Clock, system_clock
from ..errors import AlreadyExists, InvalidGrant, InvalidRequest, NotFound
from ..store.base import AccountStore, User
from .credentials import NOT_BEFORE, bump, sessions_not_before
from .passwords import MAX_PASSWORD_BYTES as _MAX_PASSWORD
from .passwords import check_password
from .usernames import canonical_username, fold, valid

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "LastAdmin",
    "UserService",
    "ensure_an_admin_remains",
    "generate_password",
    "hasher_from_settings",
]

_MAX_USERNAME = 256


def hasher_from_settings(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.password_time_cost,
        memory_cost=settings.password_memory_cost,
        parallelism=settings.password_parallelism,
    )


def generate_password() -> str:
    """A one-time password for the first admin: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class LastAdmin(InvalidRequest):
    """The change would leave no active administrator."""


def _active_admin(user: User | None) -> bool:
    return user is not None and user.is_admin and not user.disabled


def ensure_an_admin_remains(users: Iterable[User], change: Mapping[str, User | None]) -> None:
    """The one rule against locking everybody out: raise :class:`LastAdmin` when applying
    ``change`` (username → the user after the change, ``None`` = removed) to ``users`` leaves
    no active administrator where there was one. Every way to lose admin rights (disable,
    remove, demote) goes through here."""
    before = {u.username: u for u in users}
    after = {**before, **change}
    if any(_active_admin(u) for u in before.values()) and not any(
        _active_admin(u) for u in after.values()
    ):
        raise LastAdmin("the last active admin cannot be disabled, removed or demoted")


class UserService:
    """Create, authenticate, list and disable users kept in an :class:`AccountStore`."""

    def __init__(
        self,
        store: AccountStore,
        *,
        hasher: PasswordHasher | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def run() -> bool:
            try:
                return bool(self.hasher.verify(password_hash, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(run)

    async def _find(self, username: str) -> User | None:
        """The user named ``username``: the exact stored name first (records from before the
        username rule keep working by it), else the canonical (NFKC + case-folded) form."""
        if not isinstance(username, str) or not username or len(username) > _MAX_USERNAME:
            return None
        user = await self.store.get_user(username)
        if user is None and valid(username):
            folded = fold(username)
            if folded != username:
                user = await self.store.get_user(folded)
        return user

    async def create(
        self,
        username: str,
        password: str,
        *,
        is_admin: bool = False,
        roles: tuple[str, ...] | list[str] = (),
    ) -> User:
        """Create a user; ``is_admin`` is a shortcut for the ``admin`` role."""
        names = tuple(dict.fromkeys([*roles, *(["admin"] if is_admin else [])]))
        username = canonical_username(username)
        clash = [u.username for u in await self.store.list_users() if fold(u.username) == username]
        if clash:
            raise AlreadyExists(f"user {clash[0]!r} exists (names are compared case-blind)")
        check_password(password, username=username)
        user = User(
            username=username,
            password_hash=await self._hash(password),
            created_at=self.clock.now(),
            is_admin="admin" in names,
            roles=names,
        )
        await self.store.create_user(user)
        return user

    async def set_password(self, username: str, password: str) -> User:
        user = await self._find(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        check_password(password, username=user.username)
        user = bump(replace(user, password_hash=await self._hash(password)), self.clock.now())
        await self.store.update_user(user)
        return user

    async def authenticate(self, username: str, password: str) -> User:
        """The user, or ``InvalidGrant("invalid username or password")`` — the same answer
        and about the same time for a wrong password, an unknown or a disabled user."""
        failure = InvalidGrant("invalid username or password")
        if (
            not isinstance(username, str)
            or not isinstance(password, str)
            or len(username) > _MAX_USERNAME
            or "\x00" in username  # never a user (printable names); PostgreSQL refuses NUL
            or len(password.encode()) > _MAX_PASSWORD
        ):
            raise failure
        user = await self._find(username)
        if user is None or user.disabled:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
            await self._verify(self._dummy_hash, password)
            raise failure
        if not await self._verify(user.password_hash, password):
            raise failure
        if self.hasher.check_needs_rehash(user.password_hash):
            user = replace(user, password_hash=await self._hash(password))
            await self.store.update_user(user)
        return user

    async def get(self, username: str) -> User | None:
        return await self._find(username)

    async def list(self) -> list[User]:
        return await self.store.list_users()

    async def set_disabled(self, username: str, disabled: bool = True) -> User:
        """Disable (or enable) a user. The caller revokes a disabled user's sessions (by
        the returned record's ``username``: the stored name)."""
        user = await self._find(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        user = replace(user, disabled=disabled)
        if disabled:
            ensure_an_admin_remains(await self.store.list_users(), {user.username: user})
            # sessions older than this are dead, even one a racing login starts
            user = bump(user, self.clock.now())
        await self.store.update_user(user)
        return user

    async def remove(self, username: str) -> None:
        """Delete a user record (the caller revokes its sessions first)."""
        user = await self.store.get_user(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        ensure_an_admin_remains(await self.store.list_users(), {username: None})
        await self.store.delete_user(username)

    async def change_password(
        self, username: str, current: str, new: str, *, keep_session_since: float | None = None
    ) -> User:
        """Self-service: the current password must verify (same answer and cost as a failed
        login), then the new one must pass the policy. The credential version is bumped (a
        login racing this change revokes itself); ``keep_session_since`` re-binds the caller's
        own session (created then) to the new version: only sessions created before it fall
        to the watermark, and the caller revokes the others itself."""
        user = await self.authenticate(username, current)
        check_password(new, username=username)
        if current == new:
            raise InvalidRequest("the new password must differ from the current one")
        now = self.clock.now()
        before = sessions_not_before(user)
        user = bump(replace(user, password_hash=await self._hash(new)), now)
        if keep_session_since is not None:
            not_before = max(before, min(now, keep_session_since))
            user = replace(user, attributes={**user.attributes, NOT_BEFORE: not_before})
        await self.store.update_user(user)
        return user

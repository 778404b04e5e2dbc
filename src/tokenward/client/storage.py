"""Where a :class:`~tokenward.client.TokenManager` keeps its tokens.

A storage holds one token set (a JSON-able ``dict``) and offers :meth:`TokenStorage.lock`, the
lock held around read-refresh-write. ``MemoryTokenStorage`` (the default) lives and dies with the
process; ``FileTokenStorage`` is shared by every process that opens the same path (an OS file
lock: ``fcntl.flock``, ``msvcrt.locking`` on Windows), so CLI processes started together refresh
once; ``KeyringTokenStorage`` uses the operating system's keychain (extra ``tokenward[keyring]``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from .errors import ClientError

__all__ = ["FileTokenStorage", "KeyringTokenStorage", "MemoryTokenStorage", "TokenStorage"]


@runtime_checkable
class TokenStorage(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, data: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held around read-refresh-write; excludes other processes where the storage is
        shared between them (the manager adds its own thread lock)."""
        ...


class MemoryTokenStorage:
    """Tokens in this process's memory only (the default)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return "MemoryTokenStorage()"

    def load(self) -> dict[str, Any] | None:
        return dict(self._data) if self._data is not None else None

    def save(self, data: dict[str, Any]) -> None:
        self._data = dict(data)

    def clear(self) -> None:
        self._data = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield


class FileTokenStorage:
    """A JSON file readable by its owner only (mode 0600), replaced atomically on every save.

    A file that the group or others may read is refused (``ClientError``: fix it with
    ``chmod 600``) rather than used, since it would leak the refresh token. :meth:`lock` takes an
    exclusive OS lock on ``<path>.lock`` (a separate file, because the atomic replace changes the
    token file's inode), so processes sharing the path refresh one at a time and each re-reads
    the file after getting the lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._local = threading.Lock()  # fcntl locks are per process, not per thread

    def __repr__(self) -> str:
        return f"FileTokenStorage({str(self.path)!r})"

    def load(self) -> dict[str, Any] | None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClientError(f"cannot open token file {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            self._check_private(os.fstat(f.fileno()))
            raw = f.read()
        if not raw.strip():
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ClientError(f"token file {self.path} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ClientError(f"token file {self.path} does not hold a JSON object")
        return data

    def _check_private(self, st: os.stat_result) -> None:
        if sys.platform == "win32":
            return  # POSIX modes do not describe Windows ACLs
        if not stat.S_ISREG(st.st_mode):
            raise ClientError(f"token file {self.path} is not a regular file")
        if st.st_mode & 0o077:
            raise ClientError(
                f"token file {self.path} is readable or writable by group/others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {self.path}"
            )

    def save(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._local:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _lock_fd(fd)
                try:
                    yield
                finally:
                    _unlock_fd(fd)
            finally:
                os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for ~10 s, then raises
                return
            except OSError:
                continue

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class KeyringTokenStorage:
    """The token set as one secret in the operating system's keychain (the ``keyring``
    package: ``pip install 'tokenward[keyring]'``), under ``service`` / ``username``.

    The lock is per process (a keychain has no lock of its own)."""

    def __init__(self, service: str = "tokenward", username: str = "default") -> None:
        try:
            import keyring
        except ImportError:
            raise ClientError(
                "KeyringTokenStorage needs the keyring package: pip install 'tokenward[keyring]'"
            ) from None
        self._keyring: Any = keyring
        self.service = service
        self.username = username
        self._local = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyringTokenStorage({self.service!r}, {self.username!r})"

    def load(self) -> dict[str, Any] | None:
        raw = self._keyring.get_password(self.service, self.username)
        if not raw:
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        self._keyring.set_password(self.service, self.username, orjson.dumps(data).decode())

    def clear(self) -> None:
        errors = getattr(self._keyring, "errors", None)
        missing = getattr(errors, "PasswordDeleteError", LookupError)
        with contextlib.suppress(missing):
            self._keyring.delete_password(self.service, self.username)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._local:
            yield

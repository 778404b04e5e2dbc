"""The server's signing keys at rest: the key-encryption key, first start, scheduled rotation.

* **KEK**: ``TOKENWARD_KEY_ENCRYPTION_KEY`` (32 bytes, base64url). Without it, the embedded
  SQLite default uses a generated key file with mode 0600 beside the database
  (``<db>.kek``); an in-memory store uses a per-process key; a shared store (Redis,
  PostgreSQL) refuses to start, since every instance must decrypt the same key set.
  A key file is generated only while the store holds no keys: a database copied without
  its ``.kek`` stops start-up with one line saying what is missing (never a new, wrong
  key), and a KEK that does not decrypt the stored keys says so in one line.
* **First start**: the private JWKS is encrypted with the KEK (``KeyRing.to_bytes``) and
  kept in the store. Two instances starting at once agree on one key set through
  ``Store.get_or_create_secret`` (first writer wins) before it is saved.
* **Rotation**: publish-before-sign (:meth:`KeyRing.rotate` promotes the ``next`` key, already
  in the JWKS). Only one instance rotates away from a given active key: the lock is the
  named secret ``key-rotation:<kid>``, created once, and the instance whose value won rotates
  and saves; the others reload the stored set.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

from ..clock import Clock
from ..errors import ConfigurationError
from ..keys import KeyRing
from ..store.base import KeyBlobStore
from .settings import KEK_ENV, Settings, decode_kek

__all__ = [
    "KEK_ENV",
    "kek_for_store",
    "kek_path",
    "load_or_create_keyring",
    "reload_keyring",
    "resolve_kek",
    "rotate_if_due",
]


def kek_path(settings: Settings) -> Path | None:
    """The generated key file of a SQLite store without a configured KEK (``<db>.kek``)."""
    db = settings.sqlite_path
    if db is None or settings.kek() is not None:
        return None
    return db.with_name(db.name + ".kek")


def resolve_kek(settings: Settings, *, create: bool = True) -> bytes:
    """The configured KEK, else the SQLite store's key file (generated when ``create``), else
    a per-process key for an in-memory store."""
    kek = settings.kek()
    if kek is not None:
        return kek
    if settings.shared_store:
        raise ConfigurationError(
            f"{KEK_ENV}: required with a shared store "
            f"({settings.store_scheme}://); give every instance the same 32-byte base64url key"
        )
    path = kek_path(settings)
    if path is None:
        return secrets.token_bytes(32)
    if not create and not path.exists():
        raise ConfigurationError(_missing_kek(settings, path))
    return _kek_file(path)


def _missing_kek(settings: Settings, path: Path) -> str:
    return (
        f"{KEK_ENV}: the store {settings.sqlite_path} holds encrypted signing keys but their "
        f"key-encryption key file {path} is missing; restore it from the backup of the "
        f"database, or set {KEK_ENV} (--kek-file) to that key"
    )


async def kek_for_store(settings: Settings, store: KeyBlobStore) -> bytes:
    """The KEK for ``store`` (open): a key file is generated only when the store holds no
    keys yet, and a KEK that does not decrypt the stored keys is refused in one line."""
    blob = await store.load_keys()
    kek = resolve_kek(settings, create=blob is None)
    if blob is not None:
        try:
            KeyRing.from_bytes(blob, kek)
        except ConfigurationError:
            path = kek_path(settings)
            source = f"the key file {path}" if path is not None else "the configured key"
            raise ConfigurationError(
                f"{KEK_ENV}: {source} does not decrypt the signing keys in the store "
                "(wrong key-encryption key); give the key the store was created with"
            ) from None
    return kek


def _kek_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"key-encryption key file {path} is readable by others "
                f"(mode {oct(mode & 0o777)}); chmod 600 it"
            ) from None
        try:
            return decode_kek(path.read_text())
        except ValueError as exc:
            raise ConfigurationError(f"key-encryption key file {path}: {exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=") + "\n")
    return decode_kek(path.read_text())


async def load_or_create_keyring(
    store: KeyBlobStore, kek: bytes, *, alg: str, clock: Clock
) -> tuple[KeyRing, bool]:
    """The stored key set, or a new one (``created=True``) saved race-free."""
    blob = await store.load_keys()
    if blob is not None:
        return KeyRing.from_bytes(blob, kek, clock=clock), False
    candidate = KeyRing.generate(alg, clock=clock).to_bytes(kek)
    winner = await store.get_or_create_secret("keys-bootstrap", lambda: candidate)
    if winner == candidate:
        await store.save_keys(candidate)
        return KeyRing.from_bytes(candidate, kek, clock=clock), True
    stored = await store.load_keys()
    return KeyRing.from_bytes(stored or winner, kek, clock=clock), False


async def reload_keyring(
    store: KeyBlobStore, kek: bytes, ring: KeyRing, *, clock: Clock
) -> KeyRing:
    """The stored key set when it differs from ``ring`` (else ``ring`` itself)."""
    blob = await store.load_keys()
    if blob is None:
        return ring
    fresh = KeyRing.from_bytes(blob, kek, clock=clock)
    return ring if fresh.version == ring.version else fresh


async def rotate_if_due(
    store: KeyBlobStore,
    kek: bytes,
    ring: KeyRing,
    settings: Settings,
    *,
    clock: Clock,
    force: bool = False,
) -> tuple[KeyRing, bool]:
    """Rotate when the active key is older than ``key_rotation_days`` (or ``force``).

    Returns the ring to use from now on and whether *this* call rotated.
    """
    ring = await reload_keyring(store, kek, ring, clock=clock)
    active = ring.active
    period = settings.key_rotation_days * 86400
    started = active.activated_at or active.created_at
    if not force and (period <= 0 or clock.now() < started + period):
        return ring, False
    ticket = secrets.token_bytes(16)
    won = await store.get_or_create_secret(f"key-rotation:{active.kid}", lambda: ticket)
    if won != ticket:
        return await reload_keyring(store, kek, ring, clock=clock), False
    ring.rotate(settings.signing_alg)
    ring.prune(
        max_token_lifetime=settings.access_token_ttl + settings.leeway,
        jwks_cache_time=settings.jwks_max_age,
    )
    await store.save_keys(ring.to_bytes(kek))
    return ring, True

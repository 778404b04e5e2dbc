"""Settings (env, TOML, one-line errors), the KEK and stored keys, rotation lock, users."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from support.server import cheap_hasher
from tokenward.clock import FrozenClock
from tokenward.errors import ConfigurationError, InvalidGrant
from tokenward.keys import KeyState
from tokenward.server.keystore import load_or_create_keyring, resolve_kek, rotate_if_due
from tokenward.server.settings import load_settings
from tokenward.server.users import UserService
from tokenward.store.memory import MemoryStore

KEK = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("TOKENWARD_"):
            monkeypatch.delenv(k)


def test_settings_defaults() -> None:
    s = load_settings()
    assert s.store_url == "sqlite:///var/tokenward.db"
    assert s.access_token_ttl == 900 and s.refresh_grace_seconds == 10
    assert s.sqlite_path == Path("var/tokenward.db") and not s.shared_store


def test_settings_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "tw.toml"
    toml.write_text('issuer = "https://auth.example.com/"\naccess_token_ttl = 600\n')
    monkeypatch.setenv("TOKENWARD_CONFIG", str(toml))
    monkeypatch.setenv("TOKENWARD_ACCESS_TOKEN_TTL", "300")
    s = load_settings()
    assert s.issuer == "https://auth.example.com" and s.access_token_ttl == 300
    assert load_settings(access_token_ttl=120).access_token_ttl == 120  # CLI option wins


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("TOKENWARD_SIGNING_ALG", "none", "TOKENWARD_SIGNING_ALG: unsupported algorithm"),
        ("TOKENWARD_KEY_ENCRYPTION_KEY", "c2hvcnQ", "TOKENWARD_KEY_ENCRYPTION_KEY: must decode"),
        ("TOKENWARD_STORE_URL", "ftp://x", "TOKENWARD_STORE_URL: unknown store URL scheme"),
        ("TOKENWARD_ACCESS_TOKEN_TTL", "-5", "TOKENWARD_ACCESS_TOKEN_TTL:"),
        ("TOKENWARD_ISSUER", "not a url", "TOKENWARD_ISSUER:"),
        ("TOKENWARD_LOGIN_LIMIT_PER_IP", "lots", "TOKENWARD_LOGIN_LIMIT_PER_IP:"),
    ],
)
def test_wrong_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    msg = str(info.value)
    assert msg.startswith(needle) and "\n" not in msg


def test_missing_config_file_is_named() -> None:
    with pytest.raises(ConfigurationError, match="TOKENWARD_CONFIG: no such file"):
        load_settings("/nonexistent/tw.toml")


def test_shared_store_needs_a_kek() -> None:
    s = load_settings(store_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="TOKENWARD_KEY_ENCRYPTION_KEY: required"):
        resolve_kek(s)
    assert len(resolve_kek(load_settings(store_url="redis://x", key_encryption_key=KEK))) == 32


def test_sqlite_kek_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    s = load_settings(store_url=f"sqlite:///{tmp_path}/db/tw.db")
    kek = resolve_kek(s)
    path = tmp_path / "db" / "tw.db.kek"
    assert path.stat().st_mode & 0o777 == 0o600
    assert resolve_kek(s) == kek
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        resolve_kek(s)


async def test_keys_are_stored_encrypted_and_first_writer_wins() -> None:
    store, clock, kek = MemoryStore(), FrozenClock(), os.urandom(32)
    (a, created_a), (b, created_b) = await asyncio.gather(
        load_or_create_keyring(store, kek, alg="ES256", clock=clock),
        load_or_create_keyring(store, kek, alg="ES256", clock=clock),
    )
    assert a.version == b.version and sorted([created_a, created_b]) == [False, True]
    blob = await store.load_keys()
    assert blob is not None and b'"d"' not in blob and a.active.kid.encode() not in blob
    with pytest.raises(ConfigurationError):
        await load_or_create_keyring(store, os.urandom(32), alg="ES256", clock=clock)


async def test_scheduled_rotation_happens_once_across_instances() -> None:
    store, clock, kek = MemoryStore(), FrozenClock(), os.urandom(32)
    s = load_settings(store_url="memory://", key_rotation_days=30)
    ring1, _ = await load_or_create_keyring(store, kek, alg="ES256", clock=clock)
    ring2, _ = await load_or_create_keyring(store, kek, alg="ES256", clock=clock)
    old, nxt = ring1.active.kid, next(k.kid for k in ring1 if k.state is KeyState.NEXT)
    assert (await rotate_if_due(store, kek, ring1, s, clock=clock))[1] is False  # not due
    clock.advance(30 * 86400 + 1)
    (_r1, rot1), (_r2, rot2) = await asyncio.gather(
        rotate_if_due(store, kek, ring1, s, clock=clock),
        rotate_if_due(store, kek, ring2, s, clock=clock),
    )
    assert sorted([rot1, rot2]) == [False, True]
    stored, _ = await load_or_create_keyring(store, kek, alg="ES256", clock=clock)
    assert stored.active.kid == nxt  # publish-before-sign: the old "next" signs now
    assert stored.get(old) is not None and stored.get(old).state is KeyState.RETIRED  # type: ignore[union-attr]


async def test_users_rehash_on_login_and_disabled_user_fails() -> None:
    store = MemoryStore()
    weak = UserService(store, hasher=cheap_hasher())
    await weak.create("carol", "pw-1234567")
    before = (await store.get_user("carol")).password_hash  # type: ignore[union-attr]
    from argon2 import PasswordHasher

    stronger = UserService(store, hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    await stronger.authenticate("carol", "pw-1234567")
    after = (await store.get_user("carol")).password_hash  # type: ignore[union-attr]
    assert after != before and "m=16" in after
    await stronger.set_disabled("carol")
    with pytest.raises(InvalidGrant, match="invalid username or password"):
        await stronger.authenticate("carol", "pw-1234567")


async def test_unknown_user_costs_a_password_check() -> None:
    from argon2 import PasswordHasher

    calls: list[str] = []

    class Spy(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            calls.append(str(hash))
            return super().verify(hash, password)

    svc = UserService(MemoryStore(), hasher=Spy(time_cost=1, memory_cost=8, parallelism=1))
    with pytest.raises(InvalidGrant):
        await svc.authenticate("ghost", "whatever")
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")

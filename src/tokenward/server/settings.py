"""The one settings object of the tokenward server and CLI (pydantic-settings).

Sources, highest priority first: explicit arguments (CLI options), ``TOKENWARD_*`` environment
variables, an optional TOML file (``TOKENWARD_CONFIG`` or ``--config``; keys are the field
names, e.g. ``store_url = "sqlite:///var/tokenward.db"``), then the defaults below. Library
classes never read the environment: only :func:`load_settings` does.

A wrong value stops start-up with one line naming the setting
(``ConfigurationError("TOKENWARD_SIGNING_ALG: unsupported algorithm 'XX256' ...")``).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import tomllib
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ..errors import ConfigurationError
from ..keys import ALGORITHMS
from ..mirror import DEFAULT_MAX_STALENESS

if TYPE_CHECKING:
    from ..jwe import TokenEncryption

__all__ = [
    "DEPRECATED_KEK_ENV",
    "DURATION_FIELDS",
    "ENV_PREFIX",
    "KEK_ENV",
    "MAX_WORKERS",
    "RISK_SIGNALS",
    "Settings",
    "cpu_cores",
    "decode_kek",
    "load_settings",
    "parse_seconds",
    "parse_workers",
    "warn_deprecated_kek",
]

ENV_PREFIX = "TOKENWARD_"
_toml_file: ContextVar[Path | None] = ContextVar("tokenward_toml_file", default=None)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Settings that are a number of seconds; they also take ``90s``, ``15m``, ``1h``, ``7d``.
DURATION_FIELDS = (
    "store_timeout",
    "access_token_ttl",
    "refresh_grace_seconds",
    "refresh_idle_ttl",
    "refresh_absolute_ttl",
    "purge_interval",
    "retention_margin",
    "leeway",
    "revocation_max_staleness",
    "record_cache_ttl",
    "feed_max_wait",
    "authorization_code_ttl",
    "signin_idle_ttl",
    "signin_absolute_ttl",
    "dpop_max_age",
    "risk_concurrent_window",
    "risk_velocity_window",
    "risk_stuffing_window",
    "risk_spraying_window",
    "risk_block_seconds",
    "risk_retention",
)
#: The signals of the risk engine; ``risk_<signal>`` (``TOKENWARD_RISK_<SIGNAL>``, or
#: ``<signal> = "..."`` in the ``[risk]`` table of the TOML file) lists its actions.
RISK_SIGNALS = (
    "concurrent_use",
    "context_change",
    "refresh_velocity",
    "new_device",
    "credential_stuffing",
    "password_spraying",
)


def parse_seconds(value: Any) -> Any:
    """``"15m"`` → 900.0, ``"7d"`` → 604800.0, ``"90"`` → 90.0; anything else is returned as
    it is (for the field's own validation to judge)."""
    if not isinstance(value, str):
        return value
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 1h or 7d")
    seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
    return int(seconds) if seconds == int(seconds) else seconds


def decode_kek(value: str) -> bytes:
    """A key-encryption key given as base64url (padding optional); exactly 32 bytes."""
    text = value.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url") from None
    if len(raw) != 32:
        raise ValueError(f"must decode to exactly 32 bytes, got {len(raw)}")
    return raw


#: The most worker processes ``workers = "auto"`` starts (the setting's own maximum).
MAX_WORKERS = 64


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's CPU set;
    else the machine's count)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def parse_workers(value: Any) -> Any:
    """``"auto"`` (any case) → one worker per core (:func:`cpu_cores`, at most
    ``MAX_WORKERS``); a number as text → that number; anything else is left to validation."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return min(cpu_cores(), MAX_WORKERS)
        if text.isdigit():
            return int(text)
    return value


class Settings(BaseSettings):
    """Every knob of the server. Field ``x`` is set by ``TOKENWARD_X`` or ``x = ...`` in TOML."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )

    store_url: str = "sqlite:///var/tokenward.db"
    # namespace inside a shared store: the Redis key prefix (PostgreSQL: ``?schema=`` in the URL)
    store_prefix: str | None = None
    store_timeout: float = Field(2.0, gt=0, le=60)  # bounds every store call (fail closed)
    issuer: str = "http://127.0.0.1:8000"
    # the resource (RFC 8707) a token is for when a request names none; the old name
    # ``audience`` / ``TOKENWARD_AUDIENCE`` is still read, with a deprecation warning
    default_resource: str = "api"
    access_token_ttl: int = Field(900, gt=0, le=86400)
    refresh_grace_seconds: float = Field(10.0, ge=0, le=300)
    refresh_idle_ttl: float = Field(14 * 86400, gt=0)
    refresh_absolute_ttl: float = Field(30 * 86400, gt=0)
    purge_interval: float = Field(3600.0, gt=0)  # seconds between retention sweeps
    retention_margin: float = Field(7 * 86400, ge=0)  # dead families kept for reuse detection
    signing_alg: str = "ES256"
    key_rotation_days: float = Field(30.0, ge=0)  # 0 disables scheduled rotation
    jwks_max_age: int = Field(300, ge=0)
    leeway: float = Field(30.0, ge=0)
    admin_password: SecretStr | None = None
    key_encryption_key: SecretStr | None = None
    # optional JWE wrapping of access tokens (RFC 7516, nested JWT): "dir" (A256GCM with a shared
    # 32-byte base64url ``jwe_key``) or "ecdh-es" (ECDH-ES+A256KW to a P-256 key; ``jwe_key`` is
    # its private JWK as JSON: this server issues the tokens and reads them back itself)
    jwe: Literal["dir", "ecdh-es"] | None = None
    jwe_key: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # worker processes; "auto": one per CPU core this process may run on (production)
    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    # slow clients: the request line + headers must arrive within header_timeout; an idle
    # kept-alive connection is closed after keep_alive_timeout; beyond max_connections open
    # connections (or running requests) uvicorn answers 503
    header_timeout: float = Field(10.0, gt=0, le=300)
    keep_alive_timeout: float = Field(5.0, gt=0, le=300)
    max_connections: int = Field(1000, ge=1)

    console_client_id: str = "tokenward-console"
    cookie_path: str = "/token"
    cookie_secure: bool = True
    # failed logins per (account, client network): an attacker elsewhere cannot lock the
    # owner out of their network; the ceiling (far higher) bounds one account's guesses in all
    login_limit_per_account: str = "5/minute"
    login_limit_per_account_ceiling: str = "100/minute;1000/hour"
    login_limit_per_ip: str = "30/minute"
    ratelimit_url: str | None = None  # None: Redis when the store is Redis, else memory
    # comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed; empty:
    # none (the client is the socket peer)
    trusted_proxies: str = ""
    # the network a client address belongs to, for per-network limits
    address_prefix_v4: int = Field(24, ge=8, le=32)
    address_prefix_v6: int = Field(48, ge=16, le=128)
    revocation_max_staleness: float = Field(DEFAULT_MAX_STALENESS, gt=0)
    # user and client records kept per process for /userinfo and /introspect (0: off); a
    # write through this process drops them at once, a revoked subject on the feed's event
    record_cache_ttl: float = Field(5.0, ge=0, le=300)
    max_body_bytes: int = Field(65536, ge=1024)
    feed_max_wait: float = Field(30.0, ge=0, le=300)
    # DPoP (RFC 9449): how old a proof's iat may be (seconds), and server nonces (§8)
    dpop_max_age: float = Field(60.0, gt=0, le=3600)
    dpop_nonce: bool = False
    # concurrent feed streams (SSE + long-polls) per process, in all and per client; 429 beyond
    feed_max_streams: int = Field(512, ge=1)
    feed_max_streams_per_client: int = Field(64, ge=1)
    # argon2id, OWASP Password Storage Cheat Sheet's first configuration (m=19 MiB, t=2, p=1):
    # ~70 ms a hash here, against ~360 ms for argon2-cffi's RFC 9106 default (64 MiB, t=3, p=4)
    password_time_cost: int = Field(2, ge=1)
    password_memory_cost: int = Field(19456, ge=8)  # KiB
    password_parallelism: int = Field(1, ge=1)
    log_json: bool = True
    # one JSON line per request (method, route, status, ms, client); off: none is built
    access_log: bool = True
    # authorization code flow and OpenID Connect
    authorization_code_ttl: int = Field(60, gt=0, le=600)  # RFC 6749 §4.1.2: short, <= 10 min
    signin_idle_ttl: float = Field(8 * 3600, gt=0)  # sign-in session at the server (cookie)
    signin_absolute_ttl: float = Field(7 * 86400, gt=0)
    # outbound deliveries (back-channel logout): loopback/private targets and plain http to them
    outbound_allow_private: bool = False
    # the risk engine (docs/risk.md): each signal's actions, comma-separated among log, flag,
    # notify, step_up, revoke_session, revoke_subject, block_prefix ("" or "none": nothing)
    risk_enabled: bool = True
    risk_concurrent_use: str = "flag"
    risk_context_change: str = "log"
    risk_refresh_velocity: str = "flag"
    risk_new_device: str = "log"
    risk_credential_stuffing: str = "flag,block_prefix"
    risk_password_spraying: str = "flag"  # noqa: S105 - a list of actions
    # two refreshes of one family from two prefixes closer than this: concurrent use
    risk_concurrent_window: float = Field(120.0, gt=0)
    # more than risk_velocity_max refreshes of one family within the window: refresh velocity
    risk_velocity_window: float = Field(300.0, gt=0)
    risk_velocity_max: int = Field(20, ge=1)
    # failed sign-ins for this many usernames from one prefix within the window: stuffing
    risk_stuffing_window: float = Field(600.0, gt=0)
    risk_stuffing_usernames: int = Field(20, ge=1)
    # one password failing for this many usernames within the window: spraying
    risk_spraying_window: float = Field(3600.0, gt=0)
    risk_spraying_usernames: int = Field(10, ge=1)
    # how long block_prefix refuses sign-ins from the prefix
    risk_block_seconds: float = Field(900.0, gt=0)
    # how long the engine remembers a family's or a user's context after its last use
    risk_retention: float = Field(30 * 86400.0, gt=0)
    # a bearer token that /metrics requires; unset = /metrics is open (keep it off the internet)
    metrics_token: SecretStr | None = None

    @field_validator(*DURATION_FIELDS, mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_seconds(v)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        return parse_workers(v)

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, v: str) -> str:
        from ..store import BACKENDS

        scheme = urlsplit(v).scheme.lower()
        if scheme not in BACKENDS:
            raise ValueError(f"unknown store URL scheme {scheme!r}")
        if scheme.startswith("sqlite") and "://" not in v:
            raise ValueError(
                f"{v!r} is not a SQLite URL: write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        return v

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http(s) URL without query (RFC 8414 §2)")
        return v.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "audience" in data:
            data = dict(data)
            old = data.pop("audience")
            _deprecated("audience", "default_resource")
            data.setdefault("default_resource", old)
        return data

    @field_validator("default_resource", "console_client_id")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("signing_alg")
    @classmethod
    def _alg(cls, v: str) -> str:
        if v not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {v!r}; use one of {', '.join(ALGORITHMS)}")
        return v

    @field_validator("key_encryption_key")
    @classmethod
    def _kek(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            decode_kek(v.get_secret_value())
        return v

    @field_validator("jwe", mode="before")
    @classmethod
    def _jwe(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower()
            if v in ("", "none", "off"):
                return None
        return v

    @field_validator("jwe_key")
    @classmethod
    def _jwe_key(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        mode = info.data.get("jwe")
        if mode is None:
            return v
        if v is None:
            raise ValueError(f"required when {ENV_PREFIX}JWE={mode}")
        _token_encryption(mode, v.get_secret_value())
        return v

    @field_validator(*(f"risk_{name}" for name in RISK_SIGNALS))
    @classmethod
    def _risk_actions(cls, v: str) -> str:
        from .risk import parse_actions

        return ",".join(parse_actions(v))

    @field_validator("cookie_path")
    @classmethod
    def _cookie_path(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in ";, \t\r\n"):
            raise ValueError("must be an absolute path without separators")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        from .addresses import parse_trusted_proxies

        parse_trusted_proxies(v)
        return v

    @field_validator(
        "login_limit_per_account", "login_limit_per_account_ceiling", "login_limit_per_ip"
    )
    @classmethod
    def _limit(cls, v: str) -> str:
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError:
            raise ValueError(f"not a rate limit like '5/minute': {v!r}") from None
        return v

    # derived values ----------------------------------------------------------------------
    @property
    def audience(self) -> str:
        """Deprecated name of :attr:`default_resource`."""
        return self.default_resource

    @property
    def store_scheme(self) -> str:
        return urlsplit(self.store_url).scheme.lower()

    @property
    def shared_store(self) -> bool:
        """True for stores that several hosts can share (Redis, PostgreSQL)."""
        return self.store_scheme not in ("memory", "sqlite", "sqlite+aiosqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a ``sqlite:///path`` store (``None`` for other stores)."""
        if not self.store_scheme.startswith("sqlite"):
            return None
        path = self.store_url.partition("://")[2]
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
        path = path.split("?", 1)[0]
        if not path or path == ":memory:":
            return None
        return Path(path)

    def token_encryption(self) -> TokenEncryption | None:
        """The JWE wrapping of access tokens (``None`` unless ``jwe`` is set)."""
        if self.jwe is None or self.jwe_key is None:
            return None
        return _token_encryption(self.jwe, self.jwe_key.get_secret_value())

    def kek(self) -> bytes | None:
        if self.key_encryption_key is None:
            return None
        return decode_kek(self.key_encryption_key.get_secret_value())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_file.get()
        if toml is not None:
            sources.append(_TomlSource(settings_cls, toml_file=toml))
        return tuple(sources)


def _flatten_risk(data: dict[str, Any]) -> dict[str, Any]:
    """The ``[risk]`` table of the TOML file: ``concurrent_use = "flag"`` under ``[risk]`` is
    the setting ``risk_concurrent_use``."""
    table = data.get("risk")
    if not isinstance(table, dict):
        return data
    out = {k: v for k, v in data.items() if k != "risk"}
    for key, value in table.items():
        out[f"risk_{key}"] = value
    return out


class _TomlSource(TomlConfigSettingsSource):
    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return _flatten_risk(super()._read_file(file_path))


def _token_encryption(mode: str, key: str) -> TokenEncryption:
    from ..jwe import TokenEncryption

    if mode == "dir":
        try:
            return TokenEncryption.direct(decode_kek(key))
        except ValueError as exc:
            raise ValueError(f"a dir key {exc}") from None
    try:
        jwk = orjson.loads(key)
    except orjson.JSONDecodeError:
        raise ValueError("an ecdh-es key must be a P-256 private JWK (JSON)") from None
    if not isinstance(jwk, dict) or "d" not in jwk:
        raise ValueError("an ecdh-es key must be a P-256 private JWK (JSON) with 'd'")
    try:
        return TokenEncryption.ecdh_es(jwk)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{ENV_PREFIX}{old.upper()} is deprecated: set {ENV_PREFIX}{new.upper()} instead "
        "(the old name is still read)",
        FutureWarning,
        stacklevel=3,
    )


KEK_ENV = ENV_PREFIX + "KEY_ENCRYPTION_KEY"
#: The CLI's old name for the KEK: accepted, with a warning, for one release.
DEPRECATED_KEK_ENV = ENV_PREFIX + "KEK"


def warn_deprecated_kek() -> None:
    warnings.warn(
        f"{DEPRECATED_KEK_ENV} is deprecated and will be removed in the next release; "
        f"set {KEK_ENV} instead",
        FutureWarning,
        stacklevel=3,
    )


def _field_env_name(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "settings"
    return ENV_PREFIX + name.upper()


def _toml_keys(toml: Path | None) -> set[str]:
    if toml is None:
        return set()
    try:
        with toml.open("rb") as f:
            return {k.lower() for k in _flatten_risk(tomllib.load(f))}
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def _setting_error(err: Any, toml: Path | None, overrides: dict[str, Any]) -> str:
    """One line naming the wrong setting where it was written: the TOML key when it came
    from the file (and not from an override or the environment), else the variable."""
    loc = tuple(err.get("loc", ()))
    name = str(loc[0]).lower() if loc else "settings"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    from_env = (ENV_PREFIX + name.upper()) in {k.upper() for k in os.environ}
    in_toml = toml is not None and name in _toml_keys(toml) and name not in overrides
    if in_toml and not from_env:
        if err.get("type") == "extra_forbidden":
            close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{toml}: unknown setting {name!r}{hint}"
        return f"{toml}: {name}: {msg}"
    if err.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
        hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
        return f"{_field_env_name(loc)}: unknown setting{hint}"
    return f"{_field_env_name(loc)}: {msg}"


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, ``TOKENWARD_*`` and the TOML file.

    ``config_file`` defaults to ``$TOKENWARD_CONFIG``. Raises ``ConfigurationError`` with one
    line naming the first wrong setting.
    """
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    toml: Path | None = None
    if path:
        toml = Path(path)
        if not toml.is_file():
            raise ConfigurationError(f"{ENV_PREFIX}CONFIG: no such file {toml}")
    token = _toml_file.set(toml)
    clean = {k: v for k, v in overrides.items() if v is not None}
    old = os.environ.get(ENV_PREFIX + "AUDIENCE")
    if old is not None and "default_resource" not in clean and "audience" not in clean:
        _deprecated("audience", "default_resource")
        if ENV_PREFIX + "DEFAULT_RESOURCE" not in os.environ:
            clean["default_resource"] = old
    old = os.environ.get(DEPRECATED_KEK_ENV)
    if old and "key_encryption_key" not in clean and not os.environ.get(KEK_ENV):
        warn_deprecated_kek()
        clean["key_encryption_key"] = old
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigurationError(_setting_error(exc.errors()[0], toml, clean)) from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigurationError(f"{ENV_PREFIX}CONFIG: {exc}") from None
    finally:
        _toml_file.reset(token)

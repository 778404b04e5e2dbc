"""tokenward: JWT token lifecycle — access tokens, rotating refresh tokens, revocation, JWKS.

The names below are the public API. The light ones (claims, clock, errors) are imported
with the package; the rest load on first use, so ``import tokenward.guard`` (a resource
server) pays only for what it uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _logging as _logging
from .claims import AccessTokenClaims
from .clock import Clock, FrozenClock, SystemClock
from .errors import (
    AlreadyExists,
    ConfigurationError,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    NotFound,
    RevokedToken,
    StoreUnavailable,
    TokenwardError,
)

if TYPE_CHECKING:
    from .issuer import IssuedAccessToken, Issuer
    from .jwe import TokenEncryption
    from .keys import KeyRing, KeyState, SigningKey
    from .revocation import Denylist
    from .sessions import SessionInfo, SessionManager, TokenPair
    from .store import store_from_url
    from .verifier import Verifier

__version__ = "0.1.0"

_LAZY = {
    "IssuedAccessToken": ".issuer",
    "Issuer": ".issuer",
    "TokenEncryption": ".jwe",
    "KeyRing": ".keys",
    "KeyState": ".keys",
    "SigningKey": ".keys",
    "Denylist": ".revocation",
    "SessionInfo": ".sessions",
    "SessionManager": ".sessions",
    "TokenPair": ".sessions",
    "store_from_url": ".store",
    "Verifier": ".verifier",
}

__all__ = [
    "AccessTokenClaims",
    "AlreadyExists",
    "Clock",
    "ConfigurationError",
    "Denylist",
    "ExpiredToken",
    "FrozenClock",
    "InvalidClient",
    "InvalidGrant",
    "InvalidToken",
    "IssuedAccessToken",
    "Issuer",
    "KeyRing",
    "KeyState",
    "NotFound",
    "RevokedToken",
    "SessionInfo",
    "SessionManager",
    "SigningKey",
    "StoreUnavailable",
    "SystemClock",
    "TokenEncryption",
    "TokenPair",
    "TokenwardError",
    "Verifier",
    "__version__",
    "store_from_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

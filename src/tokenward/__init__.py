"""tokenward: JWT token lifecycle — access tokens, rotating refresh tokens, revocation, JWKS."""

from __future__ import annotations

from .claims import AccessTokenClaims
from .clock import Clock, FrozenClock, SystemClock
from .errors import (
    ConfigurationError,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    RevokedToken,
    StoreUnavailable,
    TokenwardError,
)
from .issuer import IssuedAccessToken, Issuer
from .jwe import TokenEncryption
from .keys import KeyRing, KeyState, SigningKey
from .revocation import Denylist
from .sessions import SessionInfo, SessionManager, TokenPair
from .store import store_from_url
from .verifier import Verifier

__version__ = "0.1.0"

__all__ = [
    "AccessTokenClaims",
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

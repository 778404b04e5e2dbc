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
from .keys import KeyRing, KeyState, SigningKey
from .verifier import Verifier

__version__ = "0.1.0"

__all__ = [
    "AccessTokenClaims",
    "Clock",
    "ConfigurationError",
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
    "SigningKey",
    "StoreUnavailable",
    "SystemClock",
    "TokenwardError",
    "Verifier",
    "__version__",
]

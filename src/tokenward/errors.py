"""The one error tree of tokenward.

Every exception tokenward raises on purpose derives from :class:`TokenwardError`.
Each class carries the OAuth 2.0 ``error`` code (RFC 6749 §5.2, RFC 6750 §3.1,
RFC 7009 §2.2.1) and the HTTP status a server should answer with, so that one
exception handler can map all of them::

    TokenwardError
    ├── InvalidToken              invalid_token        401
    │   ├── MalformedToken        (not a compact JWS of our profile)
    │   ├── TokenTooLarge         (size cap, checked before decoding)
    │   ├── UnsupportedAlgorithm  (alg not allowed / does not match the key)
    │   ├── UnknownKey            (no key with that kid)
    │   ├── InvalidSignature
    │   ├── InvalidClaims         (missing / wrong iss, aud, typ ...)
    │   │   ├── ExpiredToken
    │   │   └── ImmatureToken     (nbf / iat in the future)
    │   ├── RevokedToken          (jti, sid or subject watermark)
    │   └── BearerRequired        unauthorized 401 (no credentials at all, RFC 6750 §3.1)
    ├── InvalidRequest            invalid_request      400
    │   └── UnsupportedGrantType  unsupported_grant_type 400
    ├── InvalidDPoPProof          invalid_dpop_proof   400 (401 at a resource, RFC 9449 §7.1)
    │   └── UseDPoPNonce          use_dpop_nonce       (RFC 9449 §8, carries the nonce)
    ├── InvalidGrant              invalid_grant        400
    │   └── RefreshTokenReused    (reuse detected; the family was revoked)
    ├── InvalidClient             invalid_client       401
    ├── UnauthorizedClient        unauthorized_client  400
    ├── InvalidScope              invalid_scope        400
    ├── InvalidTarget             invalid_target       400  (RFC 8707 §2: the resource)
    ├── InsufficientScope         insufficient_scope   403
    ├── NotFound                  not_found            404
    ├── AlreadyExists             already_exists       409
    ├── RateLimited               invalid_request      429
    ├── StoreUnavailable          temporarily_unavailable 503
    ├── KeyRingError              server_error         500
    └── ConfigurationError        server_error         500

Messages say what is wrong ("token expired at 2026-11-28T10:00:00Z", "unknown
kid", "alg does not match key") and never contain token values or key material.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "BearerRequired",
    "ConfigurationError",
    "ExpiredToken",
    "ImmatureToken",
    "InsufficientScope",
    "InvalidClaims",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidSignature",
    "InvalidTarget",
    "InvalidToken",
    "KeyRingError",
    "MalformedToken",
    "NotFound",
    "RateLimited",
    "RefreshTokenReused",
    "RevokedToken",
    "RiskRefused",
    "StoreUnavailable",
    "TokenTooLarge",
    "TokenwardError",
    "UnauthorizedClient",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "UnsupportedGrantType",
    "UseDPoPNonce",
]


class TokenwardError(Exception):
    """Base of every error tokenward raises on purpose."""

    error: str = "server_error"
    status_code: int = 500

    def __init__(self, description: str = "") -> None:
        super().__init__(description or self.__class__.__name__)
        self.description = description or self.error.replace("_", " ")

    def to_dict(self) -> dict[str, str]:
        """The RFC 6749 §5.2 JSON error body."""
        return {"error": self.error, "error_description": self.description}


class InvalidToken(TokenwardError):
    """The token is not acceptable (RFC 6750 §3.1 ``invalid_token``)."""

    error = "invalid_token"
    status_code = 401


class MalformedToken(InvalidToken):
    """Not a compact serialisation of our profile (segments, base64url, JSON)."""


class TokenTooLarge(InvalidToken):
    """Larger than the configured cap; refused before any decoding."""


class UnsupportedAlgorithm(InvalidToken):
    """``alg`` is not allowed, or does not equal the key's one algorithm."""


class UnknownKey(InvalidToken):
    """No key with this ``kid`` in the key set."""


class InvalidSignature(InvalidToken):
    """The signature does not verify."""


class InvalidClaims(InvalidToken):
    """A required claim is missing or has the wrong value or type."""


class ExpiredToken(InvalidClaims):
    """``exp`` is in the past (beyond the leeway)."""


class ImmatureToken(InvalidClaims):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class RevokedToken(InvalidToken):
    """The token was revoked (by ``jti``, by session ``sid`` or by subject)."""


class BearerRequired(InvalidToken):
    """No bearer token was sent at all. RFC 6750 §3.1: the challenge then carries no error
    code, so the body says ``unauthorized`` rather than ``invalid_token``."""

    error = "unauthorized"

    def __init__(self, description: str = "a bearer token is required") -> None:
        super().__init__(description)


class InvalidRequest(TokenwardError):
    error = "invalid_request"
    status_code = 400


class UnsupportedGrantType(InvalidRequest):
    """RFC 6749 §5.2: the ``grant_type`` is not supported by the server."""

    error = "unsupported_grant_type"


class InvalidDPoPProof(TokenwardError):
    """RFC 9449 §5.1, §7.1: the DPoP proof is missing or invalid. A token endpoint answers
    400; a protected resource answers 401 with a ``DPoP`` challenge."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonce(InvalidDPoPProof):
    """RFC 9449 §8, §9: the proof must carry the server's current nonce (``DPoP-Nonce``)."""

    error = "use_dpop_nonce"

    def __init__(self, description: str = "", nonce: str | None = None) -> None:
        super().__init__(description)
        self.nonce = nonce


class InvalidGrant(TokenwardError):
    """RFC 6749 §5.2: the grant (refresh token, password) is invalid."""

    error = "invalid_grant"
    status_code = 400


class RiskRefused(InvalidGrant):
    """The risk policy ended the session (or asks for a new sign-in); the description says
    why. The session was already dealt with as the policy says: do not revoke it again."""


class RefreshTokenReused(InvalidGrant):
    """A consumed refresh token came back: the whole family has been revoked."""


class InvalidClient(TokenwardError):
    error = "invalid_client"
    status_code = 401


class UnauthorizedClient(TokenwardError):
    error = "unauthorized_client"
    status_code = 400


class InvalidScope(TokenwardError):
    error = "invalid_scope"
    status_code = 400


class InvalidTarget(TokenwardError):
    """RFC 8707 §2: the requested resource is unknown, not allowed for the client, or
    more than one where only one is accepted."""

    error = "invalid_target"
    status_code = 400


class InsufficientScope(TokenwardError):
    """RFC 6750 §3.1: the token lacks a scope the resource needs."""

    error = "insufficient_scope"
    status_code = 403


class NotFound(TokenwardError):
    """The named user, client, session or key does not exist (an admin or CLI request)."""

    error = "not_found"
    status_code = 404


class AlreadyExists(TokenwardError):
    """A user or client with that name or id exists already."""

    error = "already_exists"
    status_code = 409


class RateLimited(TokenwardError):
    """Too many attempts: 429 with ``Retry-After`` (RFC 6585 §4). The body's code is the
    standard ``invalid_request`` every OAuth client knows; ``slow_down`` belongs to the device
    flow's polling (RFC 8628 §3.5), a 400."""

    error = "invalid_request"
    status_code = 429

    def __init__(self, description: str = "", retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class StoreUnavailable(TokenwardError):
    """The store cannot be reached; tokenward fails closed (RFC 7009 §2.2.1)."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str = "", retry_after: int = 5) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class KeyRingError(TokenwardError):
    """A key cannot be used as asked (wrong type, too small, no active key ...)."""


class ConfigurationError(TokenwardError):
    """Settings or arguments that cannot work."""

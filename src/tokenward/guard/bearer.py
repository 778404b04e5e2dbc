"""RFC 6750 for every integration: reading the bearer token, checking scopes, and turning an
error into a status, a ``WWW-Authenticate`` challenge and a JSON body.

=====================================  ======  =============================================
situation                              status  ``WWW-Authenticate``
=====================================  ======  =============================================
no ``Authorization: Bearer`` at all    401     ``Bearer realm="..."`` (no error, §3.1)
DPoP: bound token as Bearer, bad proof 401     ``DPoP algs="...", error=...`` (RFC 9449 §7)
malformed header (``Bearer`` alone)    400     ``Bearer realm="...", error="invalid_request"``
bad / expired / revoked token          401     ``..., error="invalid_token", error_description``
token lacks a required scope           403     ``..., error="insufficient_scope", scope="..."``
revocation mirror stale (fail closed)  503     none; ``Retry-After`` instead
=====================================  ======  =============================================

Bodies are ``{"error", "error_description"}`` (RFC 6749 §5.2 style); the description says
what is wrong and never contains the token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..claims import AccessTokenClaims
from ..errors import (
    InsufficientScope,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    RateLimited,
    StoreUnavailable,
    TokenwardError,
)
from .dpop import DPOP_CHALLENGE, DPoPChecker

__all__ = [
    "DEFAULT_REALM",
    "AuthFailure",
    "TokenVerifier",
    "aauthenticate",
    "authenticate",
    "bearer_token",
    "challenge",
    "check_scopes",
    "credentials",
    "failure_for",
    "missing_token",
]

#: The realm of every guard's challenge unless the app names its own: the same as the server's.
DEFAULT_REALM = "tokenward"

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6750 §3: error_description / scope are %x20-21 / %x23-5B / %x5D-7E
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class TokenVerifier(Protocol):
    """What the integrations need: :class:`tokenward.guard.Verifier` (or the core one)."""

    def verify(self, token: str) -> AccessTokenClaims: ...


def bearer_token(authorization: str | None) -> str | None:
    """The token from an ``Authorization`` header value.

    ``None`` when there is no header or another scheme (a request without credentials: the
    caller answers 401 with a bare challenge); ``InvalidRequest`` when the header says
    ``Bearer`` but carries no well-formed token.
    """
    if not authorization:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or _B64TOKEN.fullmatch(token) is None:
        raise InvalidRequest("malformed Authorization: Bearer header")
    return token


def credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(scheme, token)`` for the ``Bearer`` (RFC 6750 §2.1) and ``DPoP`` (RFC 9449 §7.1)
    schemes; ``None`` without credentials of either; ``InvalidRequest`` when malformed."""
    if not authorization:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    kind = scheme.lower()
    if kind not in ("bearer", "dpop"):
        return None
    token = rest.strip()
    if not token or _B64TOKEN.fullmatch(token) is None:
        raise InvalidRequest(
            f"malformed Authorization: {'Bearer' if kind == 'bearer' else 'DPoP'} header"
        )
    return ("DPoP" if kind == "dpop" else "Bearer"), token


def check_scopes(claims: AccessTokenClaims, scopes: Iterable[str]) -> AccessTokenClaims:
    """Raise ``InsufficientScope`` unless the token has every scope in ``scopes``."""
    wanted = tuple(scopes)
    if wanted and not claims.has_scopes(*wanted):
        raise InsufficientScope("the token lacks a required scope")
    return claims


def _quote(value: str) -> str:
    return '"' + _UNSAFE.sub("", value)[:200] + '"'


def challenge(
    realm: str, error: str | None = None, description: str | None = None, scope: str = ""
) -> str:
    """A ``WWW-Authenticate: Bearer ...`` value (RFC 6750 §3)."""
    parts = [f"realm={_quote(realm)}"]
    if error:
        parts.append(f"error={_quote(error)}")
        if description:
            parts.append(f"error_description={_quote(description)}")
    if scope:
        parts.append(f"scope={_quote(scope)}")
    return "Bearer " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """A framework-neutral error response."""

    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def missing_token(realm: str) -> AuthFailure:
    """RFC 6750 §3.1: a request without credentials gets a challenge with no error code."""
    return AuthFailure(
        401,
        {"error": "unauthorized", "error_description": "a bearer token is required"},
        {"WWW-Authenticate": challenge(realm)},
    )


def _dpop_challenge(error: str, description: str) -> str:
    return f"{DPOP_CHALLENGE}, error={_quote(error)}, error_description={_quote(description)}"


def failure_for(
    exc: TokenwardError, *, realm: str, scopes: Iterable[str] = (), dpop: bool = False
) -> AuthFailure:
    """Map any tokenward error raised while authenticating to its RFC 6750 response
    (RFC 9449 §7.1 with a ``DPoP`` challenge for DPoP requests and DPoP-bound tokens)."""
    if isinstance(exc, InvalidDPoPProof) or (dpop and isinstance(exc, InvalidToken)):
        return AuthFailure(
            401, exc.to_dict(), {"WWW-Authenticate": _dpop_challenge(exc.error, exc.description)}
        )
    if isinstance(exc, InvalidToken | InvalidRequest | InsufficientScope):
        scope = " ".join(scopes) if isinstance(exc, InsufficientScope) else ""
        return AuthFailure(
            exc.status_code,
            exc.to_dict(),
            {"WWW-Authenticate": challenge(realm, exc.error, exc.description, scope)},
        )
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, StoreUnavailable | RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return AuthFailure(exc.status_code, exc.to_dict(), headers)


_default_checker: DPoPChecker | None = None


def _checker(verifier: TokenVerifier) -> DPoPChecker:
    global _default_checker
    checker = getattr(verifier, "dpop", None)
    if isinstance(checker, DPoPChecker):
        return checker
    if _default_checker is None:
        _default_checker = DPoPChecker()
    return _default_checker


def authenticate(
    verifier: TokenVerifier,
    authorization: str | None,
    *,
    scopes: Iterable[str] = (),
    realm: str,
    method: str | None = None,
    url: str | None = None,
    dpop: Sequence[str] = (),
) -> AccessTokenClaims | AuthFailure:
    """Verify the request's access token: its claims, or the response to send instead.

    ``method``, ``url`` (as the application sees the request) and ``dpop`` (the values of
    its ``DPoP`` headers) let DPoP-bound tokens through (RFC 9449 §7); without them only
    unbound ``Bearer`` tokens are accepted."""
    bound = False
    try:
        creds = credentials(authorization)
        if creds is None:
            return missing_token(realm)
        scheme, token = creds
        bound = scheme == "DPoP"
        claims = verifier.verify(token)
        bound = bound or claims.jkt is not None
        _checker(verifier).check(
            claims, scheme=scheme, token=token, method=method, url=url, proofs=dpop
        )
        return check_scopes(claims, scopes)
    except TokenwardError as exc:
        return failure_for(exc, realm=realm, scopes=scopes, dpop=bound)


async def aauthenticate(
    verifier: TokenVerifier,
    authorization: str | None,
    *,
    scopes: Iterable[str] = (),
    realm: str,
    method: str | None = None,
    url: str | None = None,
    dpop: Sequence[str] = (),
) -> AccessTokenClaims | AuthFailure:
    """:func:`authenticate` for event loops: uses ``verifier.averify`` when there is one."""
    bound = False
    try:
        creds = credentials(authorization)
        if creds is None:
            return missing_token(realm)
        scheme, token = creds
        bound = scheme == "DPoP"
        averify = getattr(verifier, "averify", None)
        claims = await averify(token) if averify is not None else verifier.verify(token)
        bound = bound or claims.jkt is not None
        _checker(verifier).check(
            claims, scheme=scheme, token=token, method=method, url=url, proofs=dpop
        )
        return check_scopes(claims, scopes)
    except TokenwardError as exc:
        return failure_for(exc, realm=realm, scopes=scopes, dpop=bound)

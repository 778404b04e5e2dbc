"""Access-token claims (RFC 9068 profile) and their validation, separate from decoding.

Rules (RFC 7519 §4.1, RFC 9068 §2.2, RFC 8725 §3.8–3.9):

* ``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``jti`` and ``client_id`` are required;
* ``iss`` is compared as an exact string (a list or a prefix never matches);
* ``aud`` is a string or a non-empty list of strings that contains our audience (or, for a
  verifier serving several audiences, one of them);
* NumericDates are JSON numbers (never booleans, strings, NaN or infinities);
* ``exp``: rejected on or after ``exp + leeway``; ``nbf``: rejected while ``now + leeway < nbf``;
  ``iat``: rejected when more than ``leeway`` in the future;
* ``scope`` (space-separated), ``sid`` and ``nbf`` are optional but typed when present.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ExpiredToken, ImmatureToken, InvalidClaims

__all__ = ["AccessTokenClaims", "format_time", "validate_claims"]

_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")
_MAX_NUMERIC_DATE = 2**63  # bound for integer NumericDates: far beyond any real date


def format_time(ts: float) -> str:
    """ISO 8601 UTC, second precision: ``2026-11-28T10:00:00Z``."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    """The verified claims of an access token. ``raw`` holds every claim as received."""

    iss: str
    sub: str
    aud: tuple[str, ...]
    exp: float
    iat: float
    jti: str
    client_id: str
    scope: str | None = None
    sid: str | None = None
    nbf: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split()) if self.scope else frozenset()

    def has_scopes(self, *wanted: str) -> bool:
        return self.scopes.issuperset(wanted)

    @property
    def jkt(self) -> str | None:
        """The DPoP key thumbprint the token is bound to (``cnf.jkt``, RFC 9449 §6.1)."""
        cnf = self.raw.get("cnf")
        return cnf.get("jkt") if type(cnf) is dict else None


def _number(payload: dict[str, Any], name: str) -> float:
    v = payload[name]
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return v  # type: ignore[no-any-return]
    elif t is int and -_MAX_NUMERIC_DATE <= v <= _MAX_NUMERIC_DATE:
        return float(v)  # bounded first: float() of a huge int raises OverflowError
    raise InvalidClaims(f"claim {name!r} must be a NumericDate (a finite JSON number)")


def validate_claims(
    payload: dict[str, Any],
    *,
    issuer: str,
    audience: str | Container[str],
    now: float,
    leeway: float = 30.0,
) -> AccessTokenClaims:
    """Check ``payload`` against the profile; return typed claims or raise ``InvalidClaims``.

    This runs on every uncached verify, so the helpers are inlined (about 1 µs saved; see
    ``bench/verify.py``); the checks and their order are exactly those listed above.
    """
    try:
        iss = payload["iss"]
        sub = payload["sub"]
        aud = payload["aud"]
        exp = payload["exp"]
        iat = payload["iat"]
        jti = payload["jti"]
        client_id = payload["client_id"]
    except KeyError:
        for name in _REQUIRED:
            if name not in payload:
                raise InvalidClaims(f"required claim {name!r} is missing (RFC 9068 §2.2)") from None
        raise  # pragma: no cover - one of the names above is missing
    if type(iss) is not str or iss != issuer:
        raise InvalidClaims("iss does not match the expected issuer")
    if type(aud) is str:
        auds: tuple[str, ...] = (aud,)
    elif type(aud) is list and aud and all(type(a) is str for a in aud):
        auds = tuple(aud)
    else:
        raise InvalidClaims("aud must be a string or a non-empty array of strings")
    if type(audience) is str:
        if audience not in auds:
            raise InvalidClaims("aud does not contain this audience")
    elif not any(a in audience for a in auds):  # a verifier for several audiences
        raise InvalidClaims("aud does not contain this audience")
    t = type(exp)
    if t is int:  # bounded before float(): float() of a huge int raises OverflowError
        if not -_MAX_NUMERIC_DATE <= exp <= _MAX_NUMERIC_DATE:
            raise InvalidClaims("claim 'exp' must be a NumericDate (a finite JSON number)")
        exp = float(exp)
    elif t is not float or not math.isfinite(exp):
        raise InvalidClaims("claim 'exp' must be a NumericDate (a finite JSON number)")
    if now >= exp + leeway:
        raise ExpiredToken(f"token expired at {format_time(exp)}")
    t = type(iat)
    if t is int:  # bounded before float(): float() of a huge int raises OverflowError
        if not -_MAX_NUMERIC_DATE <= iat <= _MAX_NUMERIC_DATE:
            raise InvalidClaims("claim 'iat' must be a NumericDate (a finite JSON number)")
        iat = float(iat)
    elif t is not float or not math.isfinite(iat):
        raise InvalidClaims("claim 'iat' must be a NumericDate (a finite JSON number)")
    if iat > now + leeway:
        raise ImmatureToken(f"token issued in the future ({format_time(iat)})")
    nbf: float | None = None
    if "nbf" in payload:
        nbf = _number(payload, "nbf")
        if nbf > now + leeway:
            raise ImmatureToken(f"token not valid before {format_time(nbf)}")
    if type(sub) is not str or not sub:
        raise InvalidClaims("claim 'sub' must be a non-empty string")
    if type(jti) is not str or not jti:
        raise InvalidClaims("claim 'jti' must be a non-empty string")
    if type(client_id) is not str or not client_id:
        raise InvalidClaims("claim 'client_id' must be a non-empty string")
    scope = payload.get("scope")
    if scope is not None and type(scope) is not str:
        raise InvalidClaims("claim 'scope' must be a string")
    sid = payload.get("sid")
    if sid is not None and type(sid) is not str:
        raise InvalidClaims("claim 'sid' must be a string")
    if "cnf" in payload:  # RFC 7800 §3.1; a binding we cannot read must not be ignored
        cnf = payload["cnf"]
        if type(cnf) is not dict or type(cnf.get("jkt")) is not str or not cnf["jkt"]:
            raise InvalidClaims("claim 'cnf' must be an object with a 'jkt' string (RFC 9449 §6.1)")
    # positional: a frozen dataclass's keyword __init__ costs ~0.3 µs more
    return AccessTokenClaims(iss, sub, auds, exp, iat, jti, client_id, scope, sid, nbf, payload)

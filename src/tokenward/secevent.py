"""Security Event Tokens (RFC 8417) as Shared Signals (OpenID SSF 1.0) carry them: the event
types tokenward sends and understands, and the receiver's check of one SET.

A SET is a JWS with header ``typ: secevent+jwt`` (RFC 8417 §2.3; ``application/secevent+jwt``
is the same media type) whose claims are ``iss``, ``jti``, ``iat``, ``aud``, ``sub_id`` (an
RFC 9493 subject identifier) and ``events`` with exactly one event type URI (SSF 1.0 §4.1).
It has no ``exp`` (RFC 8417 §2.2): a receiver never asks for one.

:func:`verify_set` is strict: the signature by a key of the transmitter's JWK Set, the ``typ``,
the issuer, the audience, one event. A refusal is an :class:`InvalidSET` whose ``set_error`` is
the RFC 8935 §2.3 error code a receiver reports back (in a poll's ``setErrs``, RFC 8936 §2.4):
``invalid_request``, ``invalid_key``, ``invalid_issuer`` or ``invalid_audience``.

:func:`subject_of` reads the two kinds of subject tokenward's tokens can be matched on: a
session (``complex`` with ``session: {format: opaque, id: <sid>}``) and a user (``iss_sub``,
directly or as the ``user`` of a ``complex`` subject).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import (
    InvalidSignature,
    InvalidToken,
    KeyRingError,
    TokenwardError,
    UnknownKey,
    UnsupportedAlgorithm,
)
from .jws import JWSVerifier
from .keys import KeyRing, SigningKey
from .verifier import keys_from

__all__ = [
    "ACCOUNT_DISABLED",
    "ACCOUNT_ENABLED",
    "CREDENTIAL_CHANGE",
    "SESSIONS_REVOKED",
    "SESSION_REVOKED",
    "SET_TYPE",
    "SET_TYPES",
    "TOKEN_CLAIMS_CHANGE",
    "InvalidSET",
    "Subject",
    "set_verifier",
    "subject_of",
    "verify_set",
]

SET_TYPE = "secevent+jwt"
#: the ``typ`` values accepted (RFC 7515 §4.1.9: the ``application/`` prefix may be omitted)
SET_TYPES = frozenset({SET_TYPE, "application/" + SET_TYPE})
_CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
_RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SESSION_REVOKED = _CAEP + "session-revoked"
CREDENTIAL_CHANGE = _CAEP + "credential-change"
TOKEN_CLAIMS_CHANGE = _CAEP + "token-claims-change"
ACCOUNT_DISABLED = _RISC + "account-disabled"
ACCOUNT_ENABLED = _RISC + "account-enabled"
SESSIONS_REVOKED = _RISC + "sessions-revoked"

_MAX_JTI = 256


class InvalidSET(InvalidToken):
    """A SET the receiver refuses; ``set_error`` is its RFC 8935 §2.3 error code."""

    def __init__(self, description: str, set_error: str = "invalid_request") -> None:
        super().__init__(description)
        self.set_error = set_error


def set_verifier(keys: Mapping[str, Any] | KeyRing | Iterable[SigningKey]) -> JWSVerifier:
    """A JWS verifier over the transmitter's keys that accepts only ``typ: secevent+jwt``."""
    return JWSVerifier(keys_from(keys), types=SET_TYPES)


def verify_set(
    keys: Mapping[str, Any] | KeyRing | Iterable[SigningKey] | JWSVerifier,
    token: str,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    """The claims of a SET, or :class:`InvalidSET`.

    ``keys`` is the transmitter's JWK Set (or its keys, or a :func:`set_verifier`).
    ``issuer`` must equal ``iss`` and ``audience`` be (in) ``aud``; a receiver always passes
    both (``None`` checks only that the claim is well formed: for a transmitter reading back
    its own SETs). The claims must hold a ``jti``, an ``iat`` and exactly one event whose
    value is an object.
    """
    try:
        verifier = keys if isinstance(keys, JWSVerifier) else set_verifier(keys)
        claims = verifier.verify(token)
    except (UnknownKey, InvalidSignature, UnsupportedAlgorithm, KeyRingError) as exc:
        raise InvalidSET(f"SET signature: {exc.description}", "invalid_key") from None
    except TokenwardError as exc:
        raise InvalidSET(f"not a SET: {exc.description}") from None
    iss = claims.get("iss")
    if type(iss) is not str or not iss:
        raise InvalidSET("SET has no string 'iss'")
    if issuer is not None and iss != issuer:
        raise InvalidSET("SET 'iss' is not the transmitter's issuer", "invalid_issuer")
    aud = claims.get("aud")
    auds = [aud] if type(aud) is str else aud
    if not isinstance(auds, list) or not auds or any(type(a) is not str for a in auds):
        raise InvalidSET("SET 'aud' must be a string or a list of strings")
    if audience is not None and audience not in auds:
        raise InvalidSET("SET 'aud' does not contain this receiver", "invalid_audience")
    jti = claims.get("jti")
    if type(jti) is not str or not jti or len(jti) > _MAX_JTI:
        raise InvalidSET("SET has no usable 'jti'")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        raise InvalidSET("SET has no numeric 'iat'")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise InvalidSET("SET 'events' must hold exactly one event")
    (body,) = events.values()
    if not isinstance(body, dict):
        raise InvalidSET("the SET's event must be an object")
    sub_id = claims.get("sub_id")
    if sub_id is not None and not isinstance(sub_id, dict):
        raise InvalidSET("SET 'sub_id' must be an object")
    return claims


@dataclass(frozen=True, slots=True)
class Subject:
    """What a SET's subject names, as tokenward tokens can be matched: a session ``sid``
    and/or a user ``(iss, sub)``."""

    sid: str | None = None
    user: tuple[str, str] | None = None


def _iss_sub(d: Any) -> tuple[str, str] | None:
    if isinstance(d, dict) and d.get("format") == "iss_sub":
        iss, sub = d.get("iss"), d.get("sub")
        if type(iss) is str and iss and type(sub) is str and sub:
            return iss, sub
    return None


def _opaque(d: Any) -> str | None:
    if isinstance(d, dict) and d.get("format") == "opaque":
        value = d.get("id")
        if type(value) is str and value:
            return value
    return None


def subject_of(claims: Mapping[str, Any]) -> Subject:
    """The session and user a SET is about (RFC 9493 §3, SSF 1.0 §3); either may be ``None``
    when its format is one tokenward cannot match (``email``, ``phone_number`` ...)."""
    sub_id = claims.get("sub_id")
    if not isinstance(sub_id, dict):
        return Subject()
    if sub_id.get("format") == "complex":
        return Subject(sid=_opaque(sub_id.get("session")), user=_iss_sub(sub_id.get("user")))
    return Subject(user=_iss_sub(sub_id))

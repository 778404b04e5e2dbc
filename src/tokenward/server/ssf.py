"""Security Event Tokens for Shared Signals (OpenID SSF 1.0, CAEP, RISC): the payloads and
their signature. This is the building block of a transmitter; the stream management endpoints
and push/poll delivery are not built yet.

A SET (RFC 8417) is a JWT with header ``typ: secevent+jwt`` (RFC 8417 §2.3), signed with the
server's active key (so a receiver verifies it through the server's JWKS), and claims ``iss``,
``jti`` (receivers deduplicate by it, RFC 8935 §2), ``iat``, ``aud`` (the stream's
audience), ``sub_id`` (a subject identifier, RFC 9493) and ``events`` with exactly one event
type URI. No ``exp``: SETs are not access tokens and never carry one (RFC 8417 §2.2). There is
no ``sub`` claim either: the subject is ``sub_id`` (SSF 1.0 §4.1).

:func:`set_for_event` maps tokenward's security events (:mod:`tokenward.events`) to the
CAEP/RISC event they announce.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..jws import JWSSigner
from ..keys import KeyRing
from ..secevent import (
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    SET_TYPE,
    TOKEN_CLAIMS_CHANGE,
    verify_set,
)

__all__ = [
    "ACCOUNT_DISABLED",
    "ACCOUNT_ENABLED",
    "CREDENTIAL_CHANGE",
    "SESSIONS_REVOKED",
    "SESSION_REVOKED",
    "SET_TYPE",
    "TOKEN_CLAIMS_CHANGE",
    "build_set",
    "set_for_event",
    "sign_set",
    "verify_set",
]


def _subject(issuer: str, sub: str | None, sid: str | None) -> dict[str, Any]:
    """RFC 9493 subject identifiers: ``iss_sub`` for a user, ``complex`` with a session."""
    user = {"format": "iss_sub", "iss": issuer, "sub": sub} if sub else None
    if sid is None:
        if user is None:
            raise ValueError("a SET needs a user or a session as its subject")
        return user
    out: dict[str, Any] = {"format": "complex", "session": {"format": "opaque", "id": sid}}
    if user is not None:
        out["user"] = user
    return out


def build_set(
    event_type: str,
    *,
    issuer: str,
    audience: str | list[str],
    now: float,
    sub: str | None = None,
    sid: str | None = None,
    event: Mapping[str, Any] | None = None,
    txn: str | None = None,
) -> dict[str, Any]:
    """The claims of one SET; ``event`` is the event's own members (``reason_admin``, ...)."""
    body = {"event_timestamp": int(now), **(event or {})}
    claims: dict[str, Any] = {
        "iss": issuer,
        "jti": secrets.token_urlsafe(16),
        "iat": int(now),
        "aud": audience,
        "sub_id": _subject(issuer, sub, sid),
        "events": {event_type: body},
    }
    if txn:
        claims["txn"] = txn
    return claims


def sign_set(keyring: KeyRing, claims: Mapping[str, Any]) -> str:
    """The compact SET, signed with the active key (``typ: secevent+jwt``)."""
    return JWSSigner(keyring.active, typ=SET_TYPE).sign(claims)


def _reason(text: str) -> dict[str, str]:
    return {"en": text}


def set_for_event(
    name: str, fields: Mapping[str, Any], *, issuer: str, audience: str | list[str], now: float
) -> dict[str, Any] | None:
    """The SET claims announcing one tokenward security event, or ``None`` when it is not one
    that receivers are told about.

    * ``revoked`` of a session (``kind=sid``) → CAEP ``session-revoked``; of a user
      (``kind=sub``) → RISC ``sessions-revoked``;
    * ``refresh_token_reuse`` → CAEP ``session-revoked`` (the family was revoked);
    * ``risk_decision`` that ended a session → CAEP ``session-revoked`` with the reason;
    * ``password_changed`` → CAEP ``credential-change`` (``change_type: update``).
    """
    kind = fields.get("kind")
    if name == "revoked" and kind == "sid":
        return build_set(
            SESSION_REVOKED,
            issuer=issuer,
            audience=audience,
            now=now,
            sid=str(fields["value"]),
            event={
                "initiating_entity": "policy",
                "reason_admin": _reason(str(fields.get("reason", "revoked"))),
            },
        )
    if name == "revoked" and kind == "sub":
        return build_set(
            SESSIONS_REVOKED, issuer=issuer, audience=audience, now=now, sub=str(fields["value"])
        )
    if name == "refresh_token_reuse":
        return build_set(
            SESSION_REVOKED,
            issuer=issuer,
            audience=audience,
            now=now,
            sub=fields.get("sub"),
            sid=fields.get("sid"),
            event={
                "initiating_entity": "policy",
                "reason_admin": _reason("refresh token reuse detected"),
            },
        )
    if name == "risk_decision" and fields.get("sid"):
        ending = {"step_up", "revoke_session", "revoke_subject"}
        if not ending.intersection(fields.get("actions", ())):
            return None
        return build_set(
            SESSION_REVOKED,
            issuer=issuer,
            audience=audience,
            now=now,
            sub=fields.get("sub"),
            sid=str(fields["sid"]),
            event={
                "initiating_entity": "policy",
                "reason_admin": _reason(str(fields.get("reason", ""))),
                "reason_user": _reason("session ended: suspicious activity"),
            },
        )
    if name == "password_changed" and fields.get("sub"):
        return build_set(
            CREDENTIAL_CHANGE,
            issuer=issuer,
            audience=audience,
            now=now,
            sub=str(fields["sub"]),
            event={"credential_type": "password", "change_type": "update"},
        )
    return None

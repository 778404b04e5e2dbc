"""tokenward.guard: what a resource server imports to accept tokenward access tokens.

::

    from tokenward.guard import Verifier

    verifier = Verifier(
        jwks_url="https://auth.example/.well-known/jwks.json",
        issuer="https://auth.example",
        audience="api",
        revocations_url="https://auth.example/revocations",
        client_id="orders-api",
        client_secret="...",
    )
    claims = verifier.verify(token)  # CPU only; raises tokenward.errors.InvalidToken

``revocation=SSFPoll(poll_url, issuer=..., audience=..., token=...)`` instead of
``revocations_url`` reads revocations as Shared Signals from any SSF transmitter (RFC 8936
poll, :mod:`tokenward.guard.ssf`).

Framework glue lives in submodules imported on demand, so the core never needs the
frameworks: :mod:`tokenward.guard.fastapi`, :mod:`tokenward.guard.starlette`,
:mod:`tokenward.guard.flask`, :mod:`tokenward.guard.django`.
"""

from __future__ import annotations

from .bearer import (
    AuthFailure,
    aauthenticate,
    authenticate,
    bearer_token,
    challenge,
    check_scopes,
    failure_for,
    missing_token,
)
from .jwks import JWKSFetcher, parse_max_age
from .mirror import RevocationMirror
from .remote import Verifier
from .ssf import SSFPoll

__all__ = [
    "AuthFailure",
    "JWKSFetcher",
    "RevocationMirror",
    "SSFPoll",
    "Verifier",
    "aauthenticate",
    "authenticate",
    "bearer_token",
    "challenge",
    "check_scopes",
    "failure_for",
    "missing_token",
    "parse_max_age",
]

"""OpenID Connect ID tokens (OpenID Connect Core 1.0 §2, §3.1.3.6).

ID tokens are signed with their own RS256 key (OIDC Discovery §3 requires RS256 among
``id_token_signing_alg_values_supported``), kept beside the access-token key ring: generated once
per deployment, encrypted at rest under the key-encryption key (the named store secret
``id-token-keys:<KEK fingerprint>``; instances agree on it, first writer wins; a KEK rotation
with ``tokenward keys rekey`` starts a new ID-token key) and published in the JWKS. Access
tokens are never signed with it, and an access-token verifier never accepts an ID token: the
header's ``typ`` is ``JWT`` while access tokens must be ``at+jwt`` (RFC 8725 §3.11, RFC 9068
§2.1), and the key is not in the access-token key set.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from ..clock import Clock
from ..jws import JWSSigner, JWSVerifier, b64url_encode
from ..keys import KeyRing
from ..store.base import Store

__all__ = ["ID_TOKEN_ALG", "ID_TOKEN_TYPE", "LOGOUT_TOKEN_TYPE", "IdTokenService", "at_hash"]

ID_TOKEN_ALG = "RS256"  # noqa: S105 - an algorithm name
ID_TOKEN_TYPE = "JWT"  # noqa: S105 - a media type
LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 - OIDC Back-Channel Logout 1.0 §2.4
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_SECRET = "id-token-keys"  # noqa: S105 - the store secret's name


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (RS256) of the token."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


class IdTokenService:
    """Signs ID tokens and verifies this server's own ones (``id_token_hint``)."""

    def __init__(self, ring: KeyRing, *, issuer: str, ttl: int, clock: Clock) -> None:
        self.ring = ring
        self.issuer = issuer
        self.ttl = int(ttl)
        self.clock = clock
        self._signer = JWSSigner(ring.active, typ=ID_TOKEN_TYPE)
        self._logout_signer = JWSSigner(ring.active, typ=LOGOUT_TOKEN_TYPE)
        self._verifier = JWSVerifier(list(ring), types=frozenset({"jwt"}))

    @classmethod
    async def load(
        cls, store: Store, kek: bytes, *, issuer: str, ttl: int, clock: Clock
    ) -> IdTokenService:
        # named after the key-encryption key: after `tokenward keys rekey` a new ID-token key
        # is made under the new KEK (the old one, which only the old KEK opens, is unused)
        name = f"{_SECRET}:{hashlib.sha256(b'id-token-kek:' + kek).hexdigest()[:16]}"
        blob = await store.get_or_create_secret(
            name,
            lambda: KeyRing.generate(ID_TOKEN_ALG, clock=clock, with_next=False).to_bytes(kek),
        )
        return cls(KeyRing.from_bytes(blob, kek, clock=clock), issuer=issuer, ttl=ttl, clock=clock)

    def public_jwks(self) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = self.ring.public_jwks()["keys"]
        return keys

    def sign(
        self,
        *,
        sub: str,
        client_id: str,
        auth_time: float,
        sid: str,
        nonce: str | None = None,
        access_token: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        iat = int(self.clock.now())
        claims: dict[str, Any] = dict(extra or {})
        claims.update(
            iss=self.issuer,
            sub=sub,
            aud=client_id,
            exp=iat + self.ttl,
            iat=iat,
            auth_time=int(auth_time),
            sid=sid,
        )
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token)
        return self._signer.sign(claims)

    def logout_token(self, *, sub: str, sid: str, client_id: str) -> str:
        """OIDC Back-Channel Logout 1.0 §2.4: typed ``logout+jwt``, no ``nonce``."""
        iat = int(self.clock.now())
        return self._logout_signer.sign(
            {
                "iss": self.issuer,
                "sub": sub,
                "aud": client_id,
                "iat": iat,
                "exp": iat + 120,
                "jti": secrets.token_urlsafe(16),
                "sid": sid,
                "events": {BACKCHANNEL_EVENT: {}},
            }
        )

    def verify_hint(self, token: str) -> dict[str, Any] | None:
        """The claims of an ID token this server issued (signature and issuer checked; an
        expired one is still a valid *hint*, OIDC RP-Initiated Logout §2), else ``None``."""
        try:
            claims = self._verifier.verify(token)
        except Exception:
            return None
        if claims.get("iss") != self.issuer or not isinstance(claims.get("sub"), str):
            return None
        return claims

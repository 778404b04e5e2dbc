"""The :class:`Issuer`: mints access tokens (RFC 9068 JWT profile) with the ring's active key."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .clock import Clock, system_clock
from .errors import ConfigurationError
from .jws import JWSSigner
from .keys import KeyRing

if TYPE_CHECKING:
    from .jwe import TokenEncryption

__all__ = ["DEFAULT_ACCESS_TOKEN_TTL", "IssuedAccessToken", "Issuer"]

DEFAULT_ACCESS_TOKEN_TTL = 15 * 60
_RESERVED = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "sid"}
)


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    """A freshly signed access token and the facts a caller needs about it."""

    token: str
    jti: str
    iat: int
    exp: int
    kid: str
    claims: Mapping[str, Any]

    @property
    def expires_in(self) -> int:
        return self.exp - self.iat


class Issuer:
    """Signs access tokens for one issuer identifier (``iss``) and default audience (``aud``).

    Header ``{"alg", "kid", "typ": "at+jwt"}``; claims ``iss, sub, aud, exp, iat, jti,
    client_id`` and, when given, ``scope`` and ``sid`` (RFC 9068 §2.2). The key is always
    the ring's current ``active`` key, so :meth:`KeyRing.rotate` takes effect at once.
    """

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL,
        clock: Clock = system_clock,
        encryption: TokenEncryption | None = None,
    ) -> None:
        if not issuer or not audience:
            raise ConfigurationError("issuer and audience must be non-empty")
        if access_token_ttl <= 0:
            raise ConfigurationError("access_token_ttl must be positive")
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.access_token_ttl = int(access_token_ttl)
        self.clock = clock
        self.encryption = encryption
        self._signer: JWSSigner | None = None

    def _current_signer(self) -> JWSSigner:
        key = self.keyring.active
        signer = self._signer
        if signer is None or signer.kid != key.kid:
            signer = self._signer = JWSSigner(key)
        return signer

    def issue(
        self,
        *,
        sub: str,
        client_id: str,
        scope: str | None = None,
        sid: str | None = None,
        audience: str | list[str] | None = None,
        ttl: int | None = None,
        extra: Mapping[str, Any] | None = None,
        encryption: TokenEncryption | bool | None = True,
    ) -> IssuedAccessToken:
        """Sign (and wrap, see ``encryption``) an access token.

        ``encryption``: ``True`` (default) uses the issuer's own :class:`TokenEncryption`,
        ``False``/``None`` none, or a :class:`TokenEncryption` for this token's audience
        (e.g. to a resource's public key)."""
        if not isinstance(sub, str) or not sub:
            raise ConfigurationError("sub must be a non-empty string")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        lifetime = self.access_token_ttl if ttl is None else int(ttl)
        if lifetime <= 0:
            raise ConfigurationError("ttl must be positive")
        iat = int(self.clock.now())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {}
        if extra:
            clash = _RESERVED.intersection(extra)
            if clash:
                raise ConfigurationError(f"extra claims may not set {sorted(clash)}")
            claims.update(extra)
        claims.update(
            iss=self.issuer,
            sub=sub,
            aud=audience or self.audience,
            exp=iat + lifetime,
            iat=iat,
            jti=jti,
            client_id=client_id,
        )
        if scope:
            claims["scope"] = scope
        if sid:
            claims["sid"] = sid
        signer = self._current_signer()
        token = signer.sign(claims)
        wrap = self.encryption if encryption is True else encryption or None
        if wrap is not None:
            token = wrap.encrypt(token)
        return IssuedAccessToken(token, jti, iat, iat + lifetime, signer.kid, claims)

    def issue_access_token(
        self,
        *,
        sub: str,
        client_id: str,
        scope: str | None = None,
        sid: str | None = None,
        audience: str | list[str] | None = None,
        ttl: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Like :meth:`issue`, returning only the compact token string."""
        return self.issue(
            sub=sub,
            client_id=client_id,
            scope=scope,
            sid=sid,
            audience=audience,
            ttl=ttl,
            extra=extra,
        ).token

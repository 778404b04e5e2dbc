"""The :class:`Verifier`: local, CPU-only verification of access tokens.

``verify(token)`` runs, in this order: the size cap (before any decoding), the strict JWS
profile (:mod:`tokenward.jws`), claim validation (:mod:`tokenward.claims`) with the injected
clock and leeway, then the revocation check (an in-memory denylist, see
:mod:`tokenward.revocation`). A bounded verified-token cache makes a repeat verify of the same
token a dictionary lookup; a cache hit still re-checks ``exp`` and revocation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .claims import AccessTokenClaims, format_time, validate_claims
from .clock import Clock, system_clock
from .errors import ConfigurationError, ExpiredToken, MalformedToken, TokenTooLarge
from .jws import ACCESS_TOKEN_TYPES, DEFAULT_MAX_TOKEN_SIZE, JWSVerifier
from .keys import KeyRing, SigningKey, keys_from_jwks

if TYPE_CHECKING:
    from .jwe import TokenEncryption

__all__ = ["DEFAULT_CACHE_SIZE", "DEFAULT_LEEWAY", "RevocationCheck", "Verifier", "keys_from"]

DEFAULT_LEEWAY = 30.0
DEFAULT_CACHE_SIZE = 10_000


class RevocationCheck(Protocol):
    """What the verifier asks after the signature and claims are good.

    ``check`` raises :class:`tokenward.errors.RevokedToken` (O(1), no I/O) when the token's
    ``jti``, its session ``sid`` or its subject's "not before" watermark revokes it.
    """

    def check(self, claims: AccessTokenClaims) -> None: ...


def keys_from(jwks: Mapping[str, Any] | KeyRing | Iterable[SigningKey]) -> list[SigningKey]:
    """Verification keys from a JWKS document, a :class:`KeyRing` or a list of keys."""
    if isinstance(jwks, KeyRing):
        return list(jwks)
    if isinstance(jwks, Mapping):
        members = jwks.get("keys")
        if not isinstance(members, list):
            raise ConfigurationError("a JWKS needs a 'keys' array")
        return keys_from_jwks(jwks)
    return list(jwks)


class Verifier:
    """Verify access tokens of issuer ``issuer`` for audience ``audience``.

    ``jwks`` is a JWK Set (``ring.public_jwks()``), a :class:`KeyRing` (needed for HS256,
    whose secret is never published) or a list of :class:`SigningKey`.

    * ``cache_size``: bound of the verified-token cache (oldest entry evicted first;
      ``0`` turns it off). A hit re-checks ``exp`` (with the leeway) and revocation;
      :meth:`set_keys` clears it.
    * ``encryption``: a :class:`~tokenward.jwe.TokenEncryption` holding the private key.
      Without it, a 5-segment (JWE) token is refused outright. With it, only JWE tokens
      are accepted unless ``require_encryption=False`` (e.g. while an issuer switches over).
    * ``revocation``: any object whose ``check(claims)`` raises ``RevokedToken``.
    """

    def __init__(
        self,
        jwks: Mapping[str, Any] | KeyRing | Iterable[SigningKey],
        *,
        issuer: str,
        audience: str | Container[str],
        leeway: float = DEFAULT_LEEWAY,
        clock: Clock = system_clock,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        revocation: RevocationCheck | None = None,
        encryption: TokenEncryption | None = None,
        types: frozenset[str] | None = ACCESS_TOKEN_TYPES,
        require_encryption: bool = True,
    ) -> None:
        if not issuer or not audience:
            raise ConfigurationError("issuer and audience must be non-empty")
        if leeway < 0 or cache_size < 0 or max_token_size <= 0:
            raise ConfigurationError("leeway and cache_size must be >= 0, max_token_size > 0")
        self.issuer = issuer
        self.audience = audience
        self.leeway = float(leeway)
        self.clock = clock
        self.cache_size = int(cache_size)
        self.max_token_size = int(max_token_size)
        self.revocation = revocation
        self.encryption = encryption
        if encryption is not None and not encryption.can_decrypt:
            raise ConfigurationError("the verifier's TokenEncryption needs the private key")
        self.require_encryption = bool(require_encryption)
        self._types = types
        self._jws = JWSVerifier(keys_from(jwks), types=types, max_size=max_token_size)
        self._cache: dict[str, AccessTokenClaims] = {}

    @property
    def kids(self) -> frozenset[str]:
        return self._jws.kids

    def set_keys(self, jwks: Mapping[str, Any] | KeyRing | Iterable[SigningKey]) -> None:
        """Replace the key set (e.g. after a JWKS refresh). Clears the token cache."""
        self._jws = JWSVerifier(keys_from(jwks), types=self._types, max_size=self.max_token_size)
        self._cache.clear()

    def clear_cache(self) -> None:
        self._cache.clear()

    def verify(self, token: str) -> AccessTokenClaims:
        """Return the verified claims or raise a subclass of ``InvalidToken``."""
        if type(token) is not str:
            raise MalformedToken("a token must be a string")
        if len(token) > self.max_token_size:
            raise TokenTooLarge(f"token longer than {self.max_token_size} characters")
        cache = self._cache
        claims = cache.get(token)
        if claims is not None:
            # A hit is a token that fully verified before; its exp and revocation still count.
            if self.clock.now() >= claims.exp + self.leeway:
                cache.pop(token, None)
                raise ExpiredToken(f"token expired at {format_time(claims.exp)}")
            if self.revocation is not None:
                self.revocation.check(claims)
            return claims
        if self.encryption is None:
            payload = self._jws.verify(token)  # refuses a 5-segment (JWE) token outright
        else:
            payload = self._jws.verify(self._unwrap(token))
        claims = validate_claims(
            payload,
            issuer=self.issuer,
            audience=self.audience,
            now=self.clock.now(),
            leeway=self.leeway,
        )
        if self.revocation is not None:
            self.revocation.check(claims)
        if self.cache_size:
            if len(cache) >= self.cache_size:
                # evict the oldest entry (dicts keep insertion order)
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del cache[next(iter(cache))]
            cache[token] = claims
        return claims

    def _unwrap(self, token: str) -> str:
        encryption = self.encryption
        assert encryption is not None
        if token.count(".") == 4:
            return encryption.decrypt(token)
        if self.require_encryption:
            raise MalformedToken("this verifier accepts only encrypted (JWE) access tokens")
        return token

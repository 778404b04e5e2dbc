"""Optional JWE wrapping of access tokens (nested JWT, RFC 7519 §5.2, RFC 7516).

An access token stays a signed JWS of our profile; :class:`TokenEncryption` wraps it in a
compact JWE with ``cty: "JWT"`` so that only the intended audience can read its claims.
Two shapes exist, and a :class:`TokenEncryption` accepts exactly the one it was built with:

* ``TokenEncryption.direct(secret32)`` — ``dir`` + ``A256GCM``: a 32-byte shared secret;
* ``TokenEncryption.ecdh_es(key)`` — ``ECDH-ES+A256KW`` + ``A256GCM`` to a P-256 recipient
  key: the issuer needs only its public part, the verifier the private part.

The cryptography is joserfc's. Before joserfc sees a token, the protected header is parsed
here strictly (RFC 8725 §3.1, §3.9): size cap first, strict base64url, a JSON object without
duplicate members, ``alg`` equal to the configured one (so ``PBES2-*``, ``RSA1_5``,
``RSA-OAEP*``, ``A*KW`` are never even looked at), ``enc`` exactly ``A256GCM``, ``cty`` JWT,
no ``zip`` (the DEFLATE bomb, CVE-2024-33664), no ``crit`` and no other member; the ``epk``
of ECDH-ES must be a point on P-256 (the invalid-curve attack), and every segment must have
the length this profile produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OctKey

from .errors import (
    ConfigurationError,
    InvalidToken,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from .jws import DEFAULT_MAX_TOKEN_SIZE, b64url_decode, parse_json_object

__all__ = ["DIRECT", "ECDH_ES_A256KW", "ENC", "TokenEncryption"]

DIRECT: Final = "dir"
ECDH_ES_A256KW: Final = "ECDH-ES+A256KW"
ENC: Final = "A256GCM"

_ALLOWED_MEMBERS: Final = {
    DIRECT: frozenset({"alg", "enc", "cty", "typ", "kid"}),
    ECDH_ES_A256KW: frozenset({"alg", "enc", "cty", "typ", "kid", "epk"}),
}
_ENCRYPTED_KEY_LEN: Final = {DIRECT: 0, ECDH_ES_A256KW: 40}  # A256KW of a 32-byte CEK
_IV_LEN: Final = 12
_TAG_LEN: Final = 16
_COORD_LEN: Final = 32  # P-256


def _shown(value: Any) -> str:
    """A header value safe to put in an error message (short, printable), else a placeholder."""
    if isinstance(value, str) and len(value) <= 32 and value.isprintable():
        return repr(value)
    return "(unprintable)"


class TokenEncryption:
    """Wraps and unwraps signed access tokens as compact JWE (see the module docs).

    Build with :meth:`direct` or :meth:`ecdh_es`. ``encrypt(jws)`` returns the 5-segment
    token; ``decrypt(token)`` returns the inner JWS (still to be verified!) or raises a
    subclass of :class:`~tokenward.errors.InvalidToken`.
    """

    __slots__ = ("_decrypt_key", "_encrypt_key", "alg", "enc", "kid", "max_size")

    def __init__(
        self,
        alg: str,
        *,
        encrypt_key: OctKey | ECKey,
        decrypt_key: OctKey | ECKey | None,
        kid: str | None = None,
        max_size: int = DEFAULT_MAX_TOKEN_SIZE,
    ) -> None:
        if alg not in _ALLOWED_MEMBERS:
            raise ConfigurationError(f"JWE alg must be {DIRECT!r} or {ECDH_ES_A256KW!r}")
        if max_size <= 0:
            raise ConfigurationError("max_size must be positive")
        self.alg = alg
        self.enc = ENC
        self.kid = kid
        self.max_size = int(max_size)
        self._encrypt_key = encrypt_key
        self._decrypt_key = decrypt_key

    def __repr__(self) -> str:
        return (
            f"TokenEncryption(alg={self.alg!r}, enc={self.enc!r}, can_decrypt={self.can_decrypt})"
        )

    # construction ---------------------------------------------------------------------
    @classmethod
    def direct(cls, secret32: bytes, *, max_size: int = DEFAULT_MAX_TOKEN_SIZE) -> TokenEncryption:
        """``dir`` + ``A256GCM`` with a shared 32-byte secret (both sides hold it)."""
        if not isinstance(secret32, bytes | bytearray) or len(secret32) != 32:
            raise ConfigurationError("a direct JWE key must be exactly 32 bytes")
        key = OctKey.import_key(bytes(secret32))
        return cls(DIRECT, encrypt_key=key, decrypt_key=key, max_size=max_size)

    @classmethod
    def ecdh_es(
        cls,
        jwk_or_key: Mapping[str, Any]
        | ECKey
        | ec.EllipticCurvePrivateKey
        | ec.EllipticCurvePublicKey,
        *,
        kid: str | None = None,
        max_size: int = DEFAULT_MAX_TOKEN_SIZE,
    ) -> TokenEncryption:
        """``ECDH-ES+A256KW`` + ``A256GCM`` to a P-256 recipient key.

        A public key (JWK dict, joserfc ``ECKey`` or ``cryptography`` key) can only
        encrypt (the issuer's side); the private key also decrypts (the verifier's side).
        ``kid`` defaults to the RFC 7638 thumbprint of the recipient key.
        """
        try:
            if isinstance(jwk_or_key, ECKey):
                key = jwk_or_key
            elif isinstance(jwk_or_key, Mapping):
                d = {k: v for k, v in jwk_or_key.items() if k in ("kty", "crv", "x", "y", "d")}
                key = ECKey.import_key(d)
            elif isinstance(jwk_or_key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
                key = ECKey.import_key(jwk_or_key)
            else:
                raise ConfigurationError("ECDH-ES needs a P-256 JWK or EC key")
        except (JoseError, ValueError, TypeError, KeyError):
            raise ConfigurationError("invalid ECDH-ES recipient key") from None
        if key.curve_name != "P-256":
            raise ConfigurationError("ECDH-ES+A256KW recipient key must be on P-256")
        public = ECKey.import_key(key.as_dict(private=False))
        private = key if key.is_private else None
        if kid is None:
            kid = str(public.thumbprint())
        return cls(
            ECDH_ES_A256KW, encrypt_key=public, decrypt_key=private, kid=kid, max_size=max_size
        )

    @property
    def can_decrypt(self) -> bool:
        return self._decrypt_key is not None

    # operations -------------------------------------------------------------------------
    def encrypt(self, jws: str) -> str:
        """Wrap a compact JWS as a nested JWT (``cty: "JWT"``)."""
        if not isinstance(jws, str) or jws.count(".") != 2:
            raise ConfigurationError("only a compact JWS can be encrypted")
        header: dict[str, Any] = {"alg": self.alg, "enc": self.enc, "cty": "JWT"}
        if self.kid is not None:
            header["kid"] = self.kid
        return str(
            jwe.encrypt_compact(
                header, jws.encode("ascii"), self._encrypt_key, algorithms=[self.alg, self.enc]
            )
        )

    def check_header(self, segment: str, *, nested: bool = True) -> dict[str, Any]:
        """Parse and check a protected header segment; return it or raise ``InvalidToken``.

        ``nested`` (the default) also requires ``cty: "JWT"``.
        """
        header = parse_json_object(b64url_decode(segment), "JWE header")
        if "zip" in header:
            raise MalformedToken("compressed JWE (zip) is never accepted")
        alg = header.get("alg")
        if alg != self.alg:
            raise UnsupportedAlgorithm(f"JWE alg {_shown(alg)} is not accepted (only {self.alg})")
        enc = header.get("enc")
        if enc != self.enc:
            raise UnsupportedAlgorithm(f"JWE enc {_shown(enc)} is not accepted (only {self.enc})")
        extra = set(header) - _ALLOWED_MEMBERS[self.alg]
        if extra:
            name = sorted(extra)[0]
            raise MalformedToken(f"JWE header parameter {_shown(name)} is not allowed")
        cty = header.get("cty")
        if nested and (not isinstance(cty, str) or cty.upper() != "JWT"):
            raise MalformedToken('a nested JWT needs cty "JWT" (RFC 7519 §5.2)')
        if "typ" in header and not isinstance(header["typ"], str):
            raise MalformedToken("JWE typ must be a string")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or (self.kid and kid != self.kid)):
            raise UnknownKey("unknown JWE kid")
        if self.alg == ECDH_ES_A256KW:
            _check_epk(header.get("epk"))
        return header

    def decrypt(self, token: str) -> str:
        """Unwrap a JWE produced by :meth:`encrypt`; return the inner JWS, not yet verified."""
        plaintext = self.decrypt_bytes(token, nested=True)
        try:
            inner = plaintext.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedToken("JWE plaintext is not a compact JWS") from None
        if inner.count(".") != 2:
            raise MalformedToken("JWE plaintext is not a compact JWS")
        return inner

    def decrypt_bytes(self, token: str, *, nested: bool = True) -> bytes:
        """Every check of :meth:`decrypt` but the last: return the plaintext bytes.

        ``nested=False`` drops the ``cty: "JWT"`` requirement, for foreign test vectors
        (such as Wycheproof's) that do not encrypt a JWS.
        """
        if type(token) is not str:
            raise MalformedToken("a token must be a string")
        if len(token) > self.max_size:
            raise TokenTooLarge(f"token longer than {self.max_size} characters")
        if self._decrypt_key is None:
            raise ConfigurationError("this TokenEncryption holds no private key to decrypt")
        parts = token.split(".")
        if len(parts) != 5:
            raise MalformedToken("a compact JWE has exactly five segments")
        h, ek, iv, ct, tag = parts
        self.check_header(h, nested=nested)
        if len(b64url_decode(ek)) != _ENCRYPTED_KEY_LEN[self.alg]:
            raise MalformedToken("JWE encrypted key has the wrong length for this alg")
        if len(b64url_decode(iv)) != _IV_LEN:
            raise MalformedToken("JWE initialization vector must be 96 bits")
        if not b64url_decode(ct):
            raise MalformedToken("JWE ciphertext is empty")
        if len(b64url_decode(tag)) != _TAG_LEN:
            raise MalformedToken("JWE authentication tag must be 128 bits")
        try:
            obj = jwe.decrypt_compact(token, self._decrypt_key, algorithms=[self.alg, self.enc])
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidToken("JWE could not be decrypted (wrong key or modified token)") from None
        if not obj.plaintext:
            raise MalformedToken("JWE plaintext is empty")
        return bytes(obj.plaintext)


def _check_epk(epk: Any) -> None:
    """The ephemeral public key must be a P-256 point (refuses the invalid-curve attack)."""
    if not isinstance(epk, dict) or epk.get("kty") != "EC" or epk.get("crv") != "P-256":
        raise MalformedToken("JWE epk must be an EC P-256 public key")
    if set(epk) - {"kty", "crv", "x", "y"}:
        raise MalformedToken("JWE epk may hold only kty, crv, x and y")
    x, y = epk.get("x"), epk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise MalformedToken("JWE epk needs x and y")
    xb, yb = b64url_decode(x), b64url_decode(y)
    if len(xb) != _COORD_LEN or len(yb) != _COORD_LEN:
        raise MalformedToken("JWE epk coordinates must be 32 bytes")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xb + yb)
    except ValueError:
        raise MalformedToken("JWE epk is not a point on P-256") from None

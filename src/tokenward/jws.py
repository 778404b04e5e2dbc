"""The strict compact-JWS profile of tokenward access tokens, on ``cryptography`` + ``orjson``.

This is the one piece of JOSE tokenward writes itself: the general libraries
cost 13–26× the HMAC floor for HS256 and 1.3–3.4× for RS/ES verification, and a profile
that accepts one shape is a smaller attack surface. It is differential-tested against
joserfc and PyJWT (``tests/test_differential.py``).

What is accepted (RFC 7515 §5.2 and RFC 8725, tightened):

* a ``str`` of at most ``max_size`` characters (checked before any decoding);
* exactly three segments of strict base64url: alphabet ``A-Za-z0-9-_`` only, no padding,
  no whitespace, zero trailing bits (a canonical encoding, so one token has one spelling);
* a header that is a JSON object without duplicate members, with a string ``kid`` found by
  exact match in an in-memory map, and an ``alg`` equal to that key's one algorithm;
* no ``crit`` at all (we understand no extensions, RFC 7515 §4.1.11), and never ``jku``,
  ``x5u``, ``jwk``, ``x5c``, ``x5t``, ``x5t#S256`` (RFC 8725 §3.10), ``b64``, ``zip``, ``enc``;
* ``typ`` equal to the expected type (``at+jwt`` or ``application/at+jwt``, RFC 9068 §2.1),
  compared case-insensitively as RFC 7515 §4.1.9 asks;
* ES256/ES384 signatures as raw ``r‖s`` of exactly 64/96 bytes (RFC 7518 §3.4), RSA
  signatures of exactly the modulus length, Ed25519 signatures of 64 bytes;
* a payload that is a JSON object without duplicate members (RFC 7519 §4), parsed only
  after the signature has verified.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import (
    InvalidSignature,
    KeyRingError,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from .keys import SigningKey

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "DEFAULT_MAX_TOKEN_SIZE",
    "JWSSigner",
    "JWSVerifier",
    "b64url_decode",
    "b64url_encode",
    "make_verify_function",
    "parse_json_object",
]

DEFAULT_MAX_TOKEN_SIZE: Final = 8192
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})

_FORBIDDEN_HEADERS: Final = frozenset(
    {"crit", "jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc"}
)
_ED_NAMES: Final = frozenset({"EdDSA", "Ed25519"})
_B64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_CHARS: Final = frozenset(_B64_ALPHABET)
_HEADER_CACHE_MAX: Final = 256
_MAX_KID: Final = 256


# --------------------------------------------------------------------------- base64url
def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(
    seg: str,
    *,
    _table: bytes = bytes.maketrans(b"-_+/=", b"+/!!!"),
    _canon: tuple[str, str, str, str] = ("", "", "AQgw", "AEIMQUYcgkosw048"),
    _a2b: Callable[..., bytes] = binascii.a2b_base64,
) -> bytes:
    """Strict base64url (RFC 7515 §2, §5.2): no padding, no whitespace, canonical bits.

    Fast path (measured in ``bench/verify.py``): the segment is ASCII-encoded, ``-_`` are
    translated to ``+/`` while ``+``, ``/`` and ``=`` become ``!`` (never valid), and
    ``binascii.a2b_base64(strict_mode=True)`` rejects every other non-alphabet byte, including
    whitespace. The unused low bits of the last character must be zero (one spelling per
    value), which ``_canon`` lists per remainder.
    """
    rem = len(seg) & 3
    try:
        raw = seg.encode("ascii").translate(_table)
    except (UnicodeEncodeError, AttributeError):
        raise MalformedToken("invalid base64url segment") from None
    if rem:
        if rem == 1:
            raise MalformedToken("invalid base64url segment")
        if seg[-1] not in _canon[rem]:
            if seg[-1] in _B64_CHARS:
                raise MalformedToken("non-canonical base64url (trailing bits)")
            raise MalformedToken("invalid base64url segment")
        raw += b"==" if rem == 2 else b"="
    try:
        return _a2b(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedToken("invalid base64url segment") from None


# --------------------------------------------------------------------------- strict JSON
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise MalformedToken("duplicate member name in JSON (RFC 7519 §4)")
    return d


def _reject_constant(name: str) -> Any:
    raise MalformedToken(f"{name} is not valid JSON")


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object strictly: UTF-8, no duplicate names, no NaN/Infinity.

    The fast path is orjson; a document whose canonical re-serialisation differs from the
    input (spacing, escapes, or duplicates, which orjson would silently collapse) is parsed
    again with the standard library, rejecting duplicates.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedToken(f"{what} is not valid UTF-8 JSON") from None
    if type(obj) is not dict:
        raise MalformedToken(f"{what} must be a JSON object")
    try:
        if orjson.dumps(obj) == raw:
            return obj
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - loads output always dumps
        pass
    try:
        strict = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError):
        raise MalformedToken(f"{what} is not valid JSON") from None
    if type(strict) is not dict:  # pragma: no cover - orjson agreed it is an object
        raise MalformedToken(f"{what} must be a JSON object")
    return strict


# --------------------------------------------------------------------------- primitives
def make_verify_function(alg: str, public_key: Any) -> Callable[[bytes, bytes], bool]:
    """A ``verify(message, signature) -> bool`` bound to one key and one algorithm."""
    if alg in ("ES256", "ES384"):
        size = 32 if alg == "ES256" else 48
        curve = ec.SECP256R1 if alg == "ES256" else ec.SECP384R1
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, curve
        ):
            raise KeyRingError(f"{alg} needs an EC key on {curve.name}")
        algo = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        pk_verify = public_key.verify
        siglen = 2 * size
        from_bytes = int.from_bytes

        def verify_ec(msg: bytes, sig: bytes) -> bool:
            if len(sig) != siglen:  # RFC 7518 §3.4: raw r||s, never DER
                return False
            der = encode_dss_signature(from_bytes(sig[:size]), from_bytes(sig[size:]))
            try:
                pk_verify(der, msg, algo)
            except _CryptoInvalidSignature:
                return False
            return True

        return verify_ec
    if alg in ("RS256", "PS256"):
        from cryptography.hazmat.primitives.asymmetric import rsa

        if not isinstance(public_key, rsa.RSAPublicKey):
            raise KeyRingError(f"{alg} needs an RSA key")
        if public_key.key_size < 2048:  # RFC 7518 §3.3, §3.5 (also enforced on key import)
            raise KeyRingError(f"{alg} needs an RSA key of at least 2048 bits")
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == "RS256"
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        nbytes = (public_key.key_size + 7) // 8
        sha256 = hashes.SHA256()
        rsa_verify = public_key.verify

        def verify_rsa(msg: bytes, sig: bytes) -> bool:
            if len(sig) != nbytes:
                return False
            try:
                rsa_verify(sig, msg, pad, sha256)
            except _CryptoInvalidSignature:
                return False
            return True

        return verify_rsa
    if alg in _ED_NAMES:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise KeyRingError(f"{alg} needs an Ed25519 key")
        ed_verify = public_key.verify

        def verify_ed(msg: bytes, sig: bytes) -> bool:
            if len(sig) != 64:
                return False
            try:
                ed_verify(sig, msg)
            except _CryptoInvalidSignature:
                return False
            return True

        return verify_ed
    if alg == "HS256":
        if not isinstance(public_key, bytes) or len(public_key) < 32:
            raise KeyRingError("HS256 needs a secret of at least 32 bytes (RFC 7518 §3.2)")
        # The keyed state (inner/outer pads) is computed once and copied per call: 0.95 µs
        # instead of 1.4 µs for hmac.digest() on a 300-byte token (bench/verify.py).
        keyed = hmac.new(public_key, digestmod="sha256")
        same = hmac.compare_digest  # RFC 7515 §10.9: constant-time comparison

        def verify_hs(msg: bytes, sig: bytes) -> bool:
            h = keyed.copy()
            h.update(msg)
            return same(h.digest(), sig)

        return verify_hs
    raise UnsupportedAlgorithm(f"unsupported algorithm {alg!r}")


def _make_sign_function(alg: str, private_key: Any) -> Callable[[bytes], bytes]:
    if alg in ("ES256", "ES384"):
        size = 32 if alg == "ES256" else 48
        algo = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        sk_sign = private_key.sign

        def sign_ec(msg: bytes) -> bytes:
            r, s = decode_dss_signature(sk_sign(msg, algo))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if alg in ("RS256", "PS256"):
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == "RS256"
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        sha256 = hashes.SHA256()
        rsa_sign = private_key.sign
        return lambda msg: bytes(rsa_sign(msg, pad, sha256))
    if alg in _ED_NAMES:
        ed_sign = private_key.sign
        return lambda msg: bytes(ed_sign(msg))
    if alg == "HS256":
        keyed_sign = hmac.new(bytes(private_key), digestmod="sha256")

        def sign_hs(msg: bytes) -> bytes:
            h = keyed_sign.copy()
            h.update(msg)
            return h.digest()

        return sign_hs
    raise UnsupportedAlgorithm(f"unsupported algorithm {alg!r}")


# --------------------------------------------------------------------------- signing
class JWSSigner:
    """Signs compact JWS with one key; the header segment is computed once."""

    __slots__ = ("_header_prefix", "_sign", "alg", "kid")

    def __init__(self, key: SigningKey, *, typ: str = "at+jwt") -> None:
        self.kid = key.kid
        self.alg = key.alg
        self._sign = _make_sign_function(key.alg, key.private_key)
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        self._header_prefix = b64url_encode(orjson.dumps(header)) + "."

    def sign(self, claims: Mapping[str, Any]) -> str:
        signing_input = self._header_prefix + b64url_encode(orjson.dumps(claims))
        sig = self._sign(signing_input.encode("ascii"))
        return signing_input + "." + b64url_encode(sig)


# --------------------------------------------------------------------------- verification
class _VerifyKey:
    __slots__ = ("alg", "kid", "verify")

    def __init__(self, kid: str, alg: str, verify: Callable[[bytes, bytes], bool]) -> None:
        self.kid = kid
        self.alg = alg
        self.verify = verify


class JWSVerifier:
    """Verifies compact JWS of our profile against an in-memory ``kid`` → key map.

    ``verify(token)`` returns the payload object, or raises a subclass of
    :class:`tokenward.errors.InvalidToken`. No I/O, no key parsing on the hot path: each
    header segment that passed the header rules is remembered (bounded), so a known
    header costs one ``dict`` lookup.
    """

    __slots__ = ("_header_cache", "_keys", "max_size", "types")

    def __init__(
        self,
        keys: Iterable[SigningKey],
        *,
        types: frozenset[str] | None = ACCESS_TOKEN_TYPES,
        max_size: int = DEFAULT_MAX_TOKEN_SIZE,
    ) -> None:
        self._keys: dict[str, _VerifyKey] = {}
        for k in keys:
            if k.kid in self._keys:
                raise KeyRingError(f"duplicate kid {k.kid} in key set")
            self._keys[k.kid] = _VerifyKey(k.kid, k.alg, make_verify_function(k.alg, k.public_key))
        self._header_cache: dict[str, _VerifyKey] = {}
        self.types = types
        self.max_size = max_size

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def _key_for_header(self, seg: str) -> _VerifyKey:
        header = parse_json_object(b64url_decode(seg), "JOSE header")
        alg = header.get("alg")
        if type(alg) is not str:
            raise UnsupportedAlgorithm("header has no string 'alg'")
        if alg.lower() == "none" or alg == "":
            raise UnsupportedAlgorithm("unsecured JWS (alg 'none') is never accepted")
        bad = _FORBIDDEN_HEADERS.intersection(header)
        if bad:
            name = sorted(bad)[0]
            if name == "crit":
                raise MalformedToken(
                    "header 'crit' names extensions this verifier does not support"
                )
            raise MalformedToken(f"header parameter {name!r} is not allowed (never followed)")
        if self.types is not None:
            typ = header.get("typ")
            if type(typ) is not str or typ.lower() not in self.types:
                raise MalformedToken(f"typ must be one of {sorted(self.types)}")
        kid = header.get("kid")
        if type(kid) is not str or not kid:
            raise UnknownKey("header has no string 'kid'")
        key = self._keys.get(kid) if len(kid) <= _MAX_KID else None
        if key is None:
            raise UnknownKey("unknown kid")
        if alg != key.alg and not (alg in _ED_NAMES and key.alg in _ED_NAMES):
            raise UnsupportedAlgorithm(f"alg {alg} does not match key (which is {key.alg})")
        if len(self._header_cache) >= _HEADER_CACHE_MAX:
            self._header_cache.clear()
        self._header_cache[seg] = key
        return key

    def verify_bytes(self, token: str) -> bytes:
        """Every rule of :meth:`verify` except the last: return the verified payload *bytes*.

        For foreign test vectors (Wycheproof, RFC 7520) whose payloads are not JSON objects.
        Keep in step with :meth:`verify` (``tests/test_vectors_jws.py`` checks they agree).
        """
        if type(token) is not str:
            raise MalformedToken("a token must be a string")
        if len(token) > self.max_size:
            raise TokenTooLarge(f"token longer than {self.max_size} characters")
        parts = token.split(".")
        if len(parts) != 3:
            if len(parts) == 5:
                raise MalformedToken("encrypted (JWE) tokens are not accepted here")
            raise MalformedToken("a compact JWS has exactly three segments")
        h, p, s = parts
        key = self._header_cache.get(h)
        if key is None:
            key = self._key_for_header(h)
        payload = b64url_decode(p)
        sig = b64url_decode(s)
        if not key.verify((h + "." + p).encode("ascii"), sig):
            raise InvalidSignature("signature does not verify")
        return payload

    def verify(self, token: str) -> dict[str, Any]:
        if type(token) is not str:
            raise MalformedToken("a token must be a string")
        if len(token) > self.max_size:
            raise TokenTooLarge(f"token longer than {self.max_size} characters")
        try:
            h, p, s = token.split(".")
        except ValueError:
            if token.count(".") == 4:
                raise MalformedToken("encrypted (JWE) tokens are not accepted here") from None
            raise MalformedToken("a compact JWS has exactly three segments") from None
        key = self._header_cache.get(h) or self._key_for_header(h)
        payload = b64url_decode(p)  # checks the alphabet, so the encode below cannot fail
        if not key.verify(token[: len(h) + len(p) + 1].encode("ascii"), b64url_decode(s)):
            raise InvalidSignature("signature does not verify")
        # Parsed only after the signature verified (RFC 8725 §3.3: validate all crypto first).
        return parse_json_object(payload, "payload")

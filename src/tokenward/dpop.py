"""DPoP (RFC 9449): parse and verify proofs strictly, compute key thumbprints, make proofs.

A DPoP proof is a compact JWS whose header carries the client's public key (``jwk``) and whose
claims bind it to one HTTP request (``htm``, ``htu``), one moment (``iat``), one use (``jti``),
and, at a resource server, one access token (``ath``). Tokens bound to the key carry its
RFC 7638 thumbprint in ``cnf.jkt``. This module is pure: no I/O, no store, no server; the
replay check of ``jti`` is the caller's (:class:`tokenward.dpop.ReplayCache` and the store's
``dpop_jti_seen``), with the key :meth:`DPoPProof.replay_key`.

Verification follows RFC 9449 §4.3, tightened:

* at most ``max_size`` characters, three segments of strict base64url, JSON objects without
  duplicate members (the same parser as access tokens);
* ``typ`` is ``dpop+jwt`` (§4.2); ``alg`` is one of :data:`DPOP_ALGORITHMS` (asymmetric only:
  ``none`` and MACs are refused, §4.3 item 5); ``jwk`` is a public key of the type ``alg``
  needs, without any private member (§4.3 item 7); ``crit``, ``jku``, ``x5u``, ``x5c`` are
  refused;
* the signature verifies with that ``jwk`` (§4.3 item 6);
* ``htm`` equals the request method and ``htu`` the request URI, both normalised per
  RFC 3986 §6.2.2-§6.2.3 and compared without query and fragment (§4.3 item 9);
* ``iat`` is within ``max_age`` seconds in the past (plus ``leeway`` either side) (§4.3 item 11,
  §11.1); ``jti`` is a non-empty string (§4.2);
* with an access token, ``ath`` is base64url(SHA-256(token)) (§4.2, §4.3 item 12);
* with server nonces, ``nonce`` is one the server accepts, else ``use_dpop_nonce`` (§8).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from .errors import ConfigurationError, InvalidDPoPProof, UseDPoPNonce
from .jws import (
    _make_sign_function,
    b64url_decode,
    b64url_encode,
    make_verify_function,
    parse_json_object,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_PROOF_LEEWAY",
    "DPOP_ALGORITHMS",
    "DPOP_TYPE",
    "DPoPKey",
    "DPoPProof",
    "ReplayCache",
    "access_token_hash",
    "jwk_thumbprint",
    "new_nonce",
    "normalize_htu",
    "verify_proof",
]

DPOP_TYPE: Final = "dpop+jwt"
#: Asymmetric algorithms accepted for proofs (and advertised as
#: ``dpop_signing_alg_values_supported``). ``Ed25519`` is RFC 9864's fully-specified name for
#: ``EdDSA`` with an Ed25519 key; clients use either.
DPOP_ALGORITHMS: Final[tuple[str, ...]] = ("ES256", "EdDSA", "Ed25519", "RS256", "PS256")
DEFAULT_MAX_AGE: Final = 60.0
DEFAULT_PROOF_LEEWAY: Final = 5.0
DEFAULT_MAX_PROOF_SIZE: Final = 4096
_MAX_JTI: Final = 256
_MAX_NONCE: Final = 256
_FORBIDDEN_HEADERS: Final = frozenset(
    {"crit", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc"}
)
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KTY_FOR_ALG: Final = {
    "ES256": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
    "RS256": "RSA",
    "PS256": "RSA",
}
_JWK_CLASS: Final[dict[str, type[ECKey] | type[OKPKey] | type[RSAKey]]] = {
    "ES256": ECKey,
    "EdDSA": OKPKey,
    "Ed25519": OKPKey,
    "RS256": RSAKey,
    "PS256": RSAKey,
}
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
_KEY_CACHE_MAX: Final = 512
_METHOD: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")  # RFC 9110 §5.6.2 token
_PCT: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# --------------------------------------------------------------------------- helpers
def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url(SHA-256(ASCII(access token))) (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the required members in lexicographic order,
    no whitespace (§3.2, §3.3)."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise InvalidDPoPProof("jwk has an unsupported kty")
    try:
        canon = {m: jwk[m] for m in members}
    except KeyError as exc:
        raise InvalidDPoPProof(f"jwk lacks the member {exc.args[0]!r}") from None
    if not all(type(v) is str for v in canon.values()):
        raise InvalidDPoPProof("jwk members must be strings")
    return b64url_encode(hashlib.sha256(orjson.dumps(canon)).digest())


def _normalize_pct(text: str) -> str:
    # RFC 3986 §6.2.2.1-2: percent-encodings in upper case; unreserved characters decoded
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(0)[1:], 16))
        return ch if ch in _UNRESERVED else m.group(0).upper()

    return _PCT.sub(fix, text)


def normalize_htu(url: str) -> str:
    """The URI without query and fragment, normalised per RFC 3986 §6.2.2 and §6.2.3: scheme
    and host in lower case, the scheme's default port dropped, an empty path as ``/``,
    percent-encodings normalised (RFC 9449 §4.3 item 9). Raises ``InvalidDPoPProof`` for a
    value that is not an absolute http(s) URI."""
    if type(url) is not str or not url or len(url) > 2048:
        raise InvalidDPoPProof("htu must be an absolute http(s) URI")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidDPoPProof("htu is not a valid URI") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        raise InvalidDPoPProof("htu must be an absolute http(s) URI without user information")
    if ":" in host:  # IPv6 literal (RFC 3986 §3.2.2)
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_pct(parts.path) or "/"
    return f"{scheme}://{netloc}{path}"


def new_nonce() -> str:
    """A fresh server nonce (RFC 9449 §8): 128 random bits, base64url."""
    return secrets.token_urlsafe(16)


# --------------------------------------------------------------------------- keys
class _ProofKey:
    __slots__ = ("alg", "jkt", "public_jwk", "verify")

    def __init__(
        self, alg: str, jkt: str, public_jwk: dict[str, Any], verify: Callable[[bytes, bytes], bool]
    ) -> None:
        self.alg = alg
        self.jkt = jkt
        self.public_jwk = public_jwk
        self.verify = verify


_key_cache: OrderedDict[tuple[str, bytes], _ProofKey] = OrderedDict()


def _import_public_jwk(alg: str, jwk: Any) -> _ProofKey:
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof("the jwk header must be a JSON object (RFC 9449 §4.2)")
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise InvalidDPoPProof("the jwk header contains a private key (RFC 9449 §4.3)")
    cache_key = (alg, orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS))
    hit = _key_cache.get(cache_key)
    if hit is not None:
        _key_cache.move_to_end(cache_key)
        return hit
    kty = jwk.get("kty")
    if kty != _KTY_FOR_ALG[alg]:
        raise InvalidDPoPProof(f"alg {alg} needs a {_KTY_FOR_ALG[alg]} key in jwk")
    jkt = jwk_thumbprint(jwk)
    members = _THUMBPRINT_MEMBERS[kty]
    public = {m: jwk[m] for m in members}
    if kty == "EC" and public["crv"] != "P-256":
        raise InvalidDPoPProof("ES256 needs a P-256 key")
    if kty == "OKP" and public["crv"] != "Ed25519":
        raise InvalidDPoPProof(f"{alg} needs an Ed25519 key")
    try:
        imported = JWKRegistry.import_key(public)
        verify = make_verify_function(alg, imported.public_key)
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDPoPProof("the jwk header is not a valid public key") from None
    except Exception as exc:  # KeyRingError: wrong curve, RSA below 2048 bits
        raise InvalidDPoPProof(f"the jwk header cannot be used: {exc}") from None
    key = _ProofKey(alg, jkt, public, verify)
    _key_cache[cache_key] = key
    if len(_key_cache) > _KEY_CACHE_MAX:
        _key_cache.popitem(last=False)
    return key


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A verified proof: the key's thumbprint and the claims that matter."""

    jkt: str
    jti: str
    iat: float
    htm: str
    htu: str
    alg: str
    jwk: dict[str, Any] = field(repr=False)
    nonce: str | None = None
    ath: str | None = None

    def replay_key(self) -> str:
        """What a replay cache remembers: SHA-256 of thumbprint and ``jti``, base64url
        (RFC 9449 §11.1: a ``jti`` is unique per key)."""
        return b64url_encode(hashlib.sha256(f"{self.jkt}.{self.jti}".encode()).digest())


def verify_proof(
    proof: str | None,
    *,
    htm: str,
    htu: str,
    now: float | None = None,
    max_age: float = DEFAULT_MAX_AGE,
    leeway: float = DEFAULT_PROOF_LEEWAY,
    access_token: str | None = None,
    nonce: Callable[[str | None], bool] | None = None,
    current_nonce: Callable[[], str] | None = None,
    algorithms: Iterable[str] = DPOP_ALGORITHMS,
    max_size: int = DEFAULT_MAX_PROOF_SIZE,
) -> DPoPProof:
    """Verify one ``DPoP`` header value for the request ``htm htu`` (RFC 9449 §4.3).

    ``access_token``: the token presented with the proof (resource requests): ``ath`` must
    match it. ``nonce``: a predicate over the proof's ``nonce`` claim when the server uses
    nonces; a ``False`` answer raises :class:`UseDPoPNonce` carrying ``current_nonce()``.
    The ``jti`` replay check is the caller's (:meth:`DPoPProof.replay_key`). Raises
    :class:`InvalidDPoPProof` with a message naming the problem.
    """
    if proof is None or proof == "":
        raise InvalidDPoPProof("a DPoP proof is required (DPoP header)")
    if type(proof) is not str:
        raise InvalidDPoPProof("the DPoP proof must be a string")
    if len(proof) > max_size:
        raise InvalidDPoPProof(f"DPoP proof longer than {max_size} characters")
    parts = proof.split(".")
    if len(parts) != 3:
        raise InvalidDPoPProof("a DPoP proof is a compact JWS with three segments")
    h, p, s = parts
    try:
        header = parse_json_object(b64url_decode(h), "DPoP proof header")
        payload_raw = b64url_decode(p)
        sig = b64url_decode(s)
    except InvalidDPoPProof:
        raise
    except Exception as exc:  # MalformedToken from the strict parser
        raise InvalidDPoPProof(f"malformed DPoP proof: {exc}") from None
    typ = header.get("typ")
    if type(typ) is not str or typ.lower() != DPOP_TYPE:
        raise InvalidDPoPProof("DPoP proof typ must be dpop+jwt (RFC 9449 §4.2)")
    alg = header.get("alg")
    allowed = tuple(algorithms)
    if type(alg) is not str or alg not in allowed:
        raise InvalidDPoPProof(
            f"DPoP proof alg must be one of {', '.join(allowed)} (asymmetric, RFC 9449 §4.2)"
        )
    bad = _FORBIDDEN_HEADERS.intersection(header)
    if bad:
        raise InvalidDPoPProof(f"DPoP proof header parameter {sorted(bad)[0]!r} is not allowed")
    key = _import_public_jwk(alg, header.get("jwk"))
    if not key.verify(f"{h}.{p}".encode("ascii"), sig):
        raise InvalidDPoPProof("DPoP proof signature does not verify")
    try:
        claims = parse_json_object(payload_raw, "DPoP proof payload")
    except Exception as exc:
        raise InvalidDPoPProof(f"malformed DPoP proof: {exc}") from None
    jti = claims.get("jti")
    if type(jti) is not str or not jti or len(jti) > _MAX_JTI:
        raise InvalidDPoPProof("DPoP proof needs a jti string of at most 256 characters")
    claim_htm = claims.get("htm")
    if type(claim_htm) is not str or claim_htm != htm:
        raise InvalidDPoPProof("DPoP proof htm does not match the request method")
    claim_htu = claims.get("htu")
    if type(claim_htu) is not str:
        raise InvalidDPoPProof("DPoP proof needs an htu string")
    if normalize_htu(claim_htu) != normalize_htu(htu):
        raise InvalidDPoPProof("DPoP proof htu does not match the request URI")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or type(iat) is bool or not math.isfinite(iat):
        raise InvalidDPoPProof("DPoP proof needs a numeric iat")
    t = time.time() if now is None else now
    if iat > t + leeway:
        raise InvalidDPoPProof("DPoP proof iat is in the future")
    if iat < t - max_age - leeway:
        raise InvalidDPoPProof("DPoP proof is too old (iat)")
    ath = claims.get("ath")
    if access_token is not None:
        if type(ath) is not str:
            raise InvalidDPoPProof("DPoP proof needs ath with an access token (RFC 9449 §4.2)")
        if not hmac.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
            raise InvalidDPoPProof("DPoP proof ath does not match the access token")
    claim_nonce = claims.get("nonce")
    if claim_nonce is not None and (type(claim_nonce) is not str or len(claim_nonce) > _MAX_NONCE):
        raise InvalidDPoPProof("DPoP proof nonce must be a short string")
    if nonce is not None and not nonce(claim_nonce):
        raise UseDPoPNonce(
            "a DPoP nonce is required (RFC 9449 §8)"
            if claim_nonce is None
            else "the DPoP nonce is stale; use the one in DPoP-Nonce",
            nonce=current_nonce() if current_nonce is not None else None,
        )
    return DPoPProof(
        jkt=key.jkt,
        jti=jti,
        iat=float(iat),
        htm=claim_htm,
        htu=claim_htu,
        alg=alg,
        jwk=key.public_jwk,
        nonce=claim_nonce,
        ath=ath if type(ath) is str else None,
    )


# --------------------------------------------------------------------------- replay
class ReplayCache:
    """A bounded in-process replay cache: ``seen(key, ttl)`` is ``True`` when ``key`` was
    already recorded and has not expired, else records it. Oldest entries are evicted past
    ``max_entries`` (an evicted proof is older than ``max_age`` under any realistic load;
    across processes use a shared cache)."""

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.time):
        if max_entries < 1:
            raise ConfigurationError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: str, ttl: float) -> bool:
        with self._lock:
            return self._seen(key, ttl)

    def _seen(self, key: str, ttl: float) -> bool:
        now = self._clock()
        entries = self._entries
        exp = entries.get(key)
        if exp is not None and exp > now:
            return True
        entries[key] = now + ttl
        entries.move_to_end(key)
        # drop expired entries from the old end, then cap the size
        while entries:
            first_exp = next(iter(entries.values()))
            if first_exp > now and len(entries) <= self.max_entries:
                break
            entries.popitem(last=False)
        return False


# --------------------------------------------------------------------------- client side
class DPoPKey:
    """A client's DPoP key pair: makes proofs. ``repr()`` never shows key material."""

    __slots__ = ("_header", "_public_jwk", "_sign", "alg", "jkt", "private_key")

    def __init__(self, private_key: Any, alg: str) -> None:
        if alg not in DPOP_ALGORITHMS:
            raise ConfigurationError(f"DPoP alg must be one of {', '.join(DPOP_ALGORITHMS)}")
        try:
            jwk = _JWK_CLASS[alg].import_key(private_key)
        except (JoseError, ValueError, TypeError):
            raise ConfigurationError(f"alg {alg} needs a {_KTY_FOR_ALG[alg]} key") from None
        if not jwk.is_private:
            raise ConfigurationError("a DPoP key needs its private part")
        pub = jwk.as_dict(private=False)
        self._public_jwk = {m: pub[m] for m in _THUMBPRINT_MEMBERS[jwk.key_type]}
        self.alg = alg
        self.private_key = private_key
        self.jkt = jwk_thumbprint(self._public_jwk)
        self._sign = _make_sign_function(alg, private_key)
        self._header = b64url_encode(
            orjson.dumps({"typ": DPOP_TYPE, "alg": alg, "jwk": self._public_jwk})
        )

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), alg)
        if alg in ("EdDSA", "Ed25519"):
            return cls(ed25519.Ed25519PrivateKey.generate(), alg)
        if alg in ("RS256", "PS256"):
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)
        raise ConfigurationError(f"DPoP alg must be one of {', '.join(DPOP_ALGORITHMS)}")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> DPoPKey:
        """Load a private JWK with an ``alg`` member (as :meth:`to_jwk` writes it)."""
        alg = jwk.get("alg")
        if not isinstance(alg, str) or alg not in DPOP_ALGORITHMS:
            raise ConfigurationError("a stored DPoP key needs an alg member")
        try:
            key = JWKRegistry.import_key({k: v for k, v in jwk.items() if k != "alg"})
        except (JoseError, ValueError, TypeError, KeyError):
            raise ConfigurationError("not a valid private JWK") from None
        if not key.is_private or not isinstance(key, ECKey | OKPKey | RSAKey):
            raise ConfigurationError("a stored DPoP key must be a private key")
        return cls(key.private_key, alg)

    def to_jwk(self) -> dict[str, Any]:
        """The private JWK (with ``alg``) for storage; keep it secret."""
        d = dict(_JWK_CLASS[self.alg].import_key(self.private_key).as_dict(private=True))
        d["alg"] = self.alg
        return d

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public_jwk)

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A fresh proof for one request (RFC 9449 §4.2). ``htu`` is sent without query and
        fragment."""
        if not _METHOD.match(htm):
            raise ConfigurationError("htm must be an HTTP method")
        parts = urlsplit(htu)
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": htm,
            "htu": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = self._header + "." + b64url_encode(orjson.dumps(claims))
        return signing_input + "." + b64url_encode(self._sign(signing_input.encode("ascii")))

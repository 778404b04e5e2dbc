"""Signing keys and the key ring: generation, JWK(S) import/export, rotation, files at rest.

Each :class:`SigningKey` has exactly one algorithm (RFC 8725 §3.1) and a life-cycle state::

    next  --rotate()-->  active  --rotate()-->  retired  --prune()-->  (removed)

``next`` keys are published in the JWKS before they sign anything (publish-before-sign), so
that verifiers with a cached JWKS already know them; ``retired`` keys stay published until
every token they signed has expired plus the verifiers' JWKS cache time.

JWK import/export and RFC 7638 thumbprints go through joserfc; the hot-path signing and
verification objects are the underlying ``cryptography`` keys (see :mod:`tokenward.jws`).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OctKey, OKPKey, RSAKey

from .clock import Clock, system_clock
from .errors import ConfigurationError, KeyRingError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "KeyRing",
    "KeyState",
    "SigningKey",
    "algorithm_family",
    "key_from_jwk",
    "keys_from_jwks",
]

#: Algorithms tokenward signs and verifies. ``Ed25519`` is RFC 9864's fully-specified name
#: for what RFC 8037 calls ``EdDSA`` with an Ed25519 key; both names are understood.
ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519", "HS256")
DEFAULT_ALGORITHM = "ES256"

_MIN_RSA_BITS = 2048  # RFC 7518 §3.3, §3.5
_MIN_HMAC_BYTES = 32  # RFC 7518 §3.2: key at least the size of the hash output
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_META_PREFIX = "tw_"  # our private JWK members (state, timestamps); never in public_jwks()


def algorithm_family(alg: str) -> str:
    """The key type an algorithm needs: ``EC``, ``RSA``, ``OKP`` or ``oct``."""
    if alg in ("ES256", "ES384"):
        return "EC"
    if alg in ("RS256", "PS256"):
        return "RSA"
    if alg in ("EdDSA", "Ed25519"):
        return "OKP"
    if alg == "HS256":
        return "oct"
    raise KeyRingError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


_EC_CURVE = {"ES256": ("P-256", ec.SECP256R1), "ES384": ("P-384", ec.SECP384R1)}


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(eq=False)
class SigningKey:
    """One key with one algorithm. ``repr()`` never shows key material."""

    kid: str
    alg: str
    jwk: ECKey | RSAKey | OKPKey | OctKey = field(repr=False)
    state: KeyState = KeyState.ACTIVE
    created_at: float = 0.0
    activated_at: float | None = None
    retired_at: float | None = None

    @property
    def kty(self) -> str:
        return algorithm_family(self.alg)

    @property
    def is_symmetric(self) -> bool:
        return self.kty == "oct"

    @property
    def has_private(self) -> bool:
        return bool(self.jwk.is_private)

    @property
    def private_key(self) -> Any:
        """The ``cryptography`` private key (or the HMAC secret bytes)."""
        if self.is_symmetric:
            return self.jwk.raw_value
        if not self.jwk.is_private:
            raise KeyRingError(f"key {self.kid} has no private part")
        return self.jwk.private_key

    @property
    def public_key(self) -> Any:
        """The ``cryptography`` public key (or the HMAC secret bytes)."""
        if self.is_symmetric:
            return self.jwk.raw_value
        return self.jwk.public_key

    def public_jwk(self) -> dict[str, Any]:
        """Public parameters only, with ``kid``, ``use: sig`` and ``alg`` (RFC 7517 §4)."""
        if self.is_symmetric:
            raise KeyRingError("a symmetric (HS256) key is never published")
        d: dict[str, Any] = {
            k: v for k, v in self.jwk.as_dict(private=False).items() if k in _PUBLIC_MEMBERS
        }
        d.update(kid=self.kid, use="sig", alg=self.alg)
        return d

    def private_jwk(self) -> dict[str, Any]:
        """Every parameter, plus tokenward's ``tw_*`` state members (for backups)."""
        d: dict[str, Any] = {
            k: v
            for k, v in self.jwk.as_dict(private=True).items()
            if k in _PUBLIC_MEMBERS or k in _PRIVATE_MEMBERS
        }
        d.update(kid=self.kid, use="sig", alg=self.alg)
        d["tw_state"] = self.state.value
        d["tw_created_at"] = self.created_at
        if self.activated_at is not None:
            d["tw_activated_at"] = self.activated_at
        if self.retired_at is not None:
            d["tw_retired_at"] = self.retired_at
        return d


_PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e"})


def _generate_jwk(alg: str) -> ECKey | RSAKey | OKPKey | OctKey:
    fam = algorithm_family(alg)
    if fam == "EC":
        _crv, curve = _EC_CURVE[alg]
        return ECKey.import_key(ec.generate_private_key(curve()))
    if fam == "RSA":
        return RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if fam == "OKP":
        return OKPKey.import_key(ed25519.Ed25519PrivateKey.generate())
    return OctKey.import_key(secrets.token_bytes(_MIN_HMAC_BYTES))


def _kid(jwk: ECKey | RSAKey | OKPKey | OctKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) as the ``kid``."""
    return str(jwk.thumbprint())


def _check_key(jwk: ECKey | RSAKey | OKPKey | OctKey, alg: str) -> None:
    fam = algorithm_family(alg)
    if jwk.key_type != fam:
        raise KeyRingError(f"alg {alg} needs a {fam} key, got {jwk.key_type}")
    if isinstance(jwk, ECKey):
        want = _EC_CURVE[alg][0]
        if jwk.curve_name != want:
            raise KeyRingError(f"alg {alg} needs curve {want}, got {jwk.curve_name}")
    elif isinstance(jwk, OKPKey):
        if jwk.curve_name != "Ed25519":
            raise KeyRingError(f"alg {alg} needs an Ed25519 key, got {jwk.curve_name}")
    elif isinstance(jwk, RSAKey):
        pub = jwk.public_key
        if not isinstance(pub, rsa.RSAPublicKey):  # pragma: no cover - joserfc guarantees it
            raise KeyRingError("not an RSA public key")
        bits = pub.key_size
        if bits < _MIN_RSA_BITS:
            raise KeyRingError(f"RSA key of {bits} bits; at least {_MIN_RSA_BITS} are required")
        if _has_roca_fingerprint(pub.public_numbers().n):
            raise KeyRingError("RSA key has the ROCA fingerprint (CVE-2017-15361); replace it")
    elif len(jwk.raw_value) < _MIN_HMAC_BYTES:
        raise KeyRingError(f"HS256 secret must be at least {_MIN_HMAC_BYTES} bytes (RFC 7518 §3.2)")


# ROCA (CVE-2017-15361, Nemec et al., CCS 2017): moduli made by the vulnerable Infineon
# library are, modulo each small prime p below, in the subgroup generated by 65537. A random
# modulus passes all 38 residue tests with negligible probability (< 2^-150).
_ROCA_PRIMES: tuple[int, ...] = tuple(
    p for p in range(3, 168) if all(p % q for q in range(2, int(p**0.5) + 1))
)


def _subgroup_mask(p: int) -> int:
    mask, x = 0, 1
    while not mask >> x & 1:
        mask |= 1 << x
        x = x * 65537 % p
    return mask


_ROCA_MASKS: tuple[tuple[int, int], ...] = tuple((p, _subgroup_mask(p)) for p in _ROCA_PRIMES)


def _has_roca_fingerprint(n: int) -> bool:
    return all(mask >> (n % p) & 1 for p, mask in _ROCA_MASKS)


def _infer_alg(d: Mapping[str, Any]) -> str:
    kty, crv = d.get("kty"), d.get("crv")
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "EC" and crv == "P-384":
        return "ES384"
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    raise KeyRingError(f"JWK of type {kty!r} has no 'alg'; an explicit alg is required")


def key_from_jwk(d: Mapping[str, Any], *, require_private: bool = False) -> SigningKey:
    """Import one JWK (public or private) as a :class:`SigningKey`, strictly.

    Refused: unknown ``alg``, ``alg`` that does not fit the key, ``use`` other than ``sig``,
    ``key_ops`` without ``verify``/``sign``, RSA below 2048 bits, HMAC secrets below 32 bytes.
    """
    if not isinstance(d, Mapping):
        raise KeyRingError("a JWK must be a JSON object")
    alg = d.get("alg") or _infer_alg(d)
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise KeyRingError(f"unsupported algorithm {alg!r}")
    use = d.get("use")
    if use is not None and use != "sig":
        raise KeyRingError(f"key has use={use!r}; only 'sig' keys sign or verify tokens")
    ops = d.get("key_ops")
    if ops is not None and (
        not isinstance(ops, list)
        or not ({"sign", "verify"} & {o for o in ops if isinstance(o, str)})
    ):
        raise KeyRingError("key_ops does not allow sign or verify")
    clean = {k: v for k, v in d.items() if not k.startswith(_META_PREFIX)}
    clean.pop("key_ops", None)
    try:
        jwk = JWKRegistry.import_key(clean)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise KeyRingError(f"invalid JWK: {type(exc).__name__}") from None
    _check_key(jwk, alg)
    if require_private and not jwk.is_private:
        raise KeyRingError("a private key is required here")
    kid = _kid(jwk)
    given = d.get("kid")
    if given is not None:
        if not isinstance(given, str) or not given or len(given) > 256:
            raise KeyRingError("kid must be a non-empty string of at most 256 characters")
        kid = given
    state = d.get("tw_state", KeyState.ACTIVE.value)
    try:
        st = KeyState(state)
    except ValueError:
        raise KeyRingError(f"unknown key state {state!r}") from None
    return SigningKey(
        kid=kid,
        alg=alg,
        jwk=jwk,
        state=st,
        created_at=float(d.get("tw_created_at", 0.0)),
        activated_at=_opt_float(d.get("tw_activated_at")),
        retired_at=_opt_float(d.get("tw_retired_at")),
    )


def keys_from_jwks(jwks: Mapping[str, Any]) -> list[SigningKey]:
    """Import a JWK Set strictly, as a whole (Wycheproof ``json_web_key_test``).

    Each member goes through :func:`key_from_jwk`; the set is refused when a ``kid`` repeats
    (the lookup would be ambiguous) or when it mixes keys with private parts (``d``, ``k``)
    and public-only keys: a published JWKS holds public keys only (OIDC Discovery §3), a
    backup holds private keys only, and a mixture means a secret leaked into a public set.
    """
    members = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(members, list):
        raise KeyRingError("a JWKS needs a 'keys' array")
    keys = [key_from_jwk(k) for k in members]
    if len({k.kid for k in keys}) != len(keys):
        raise KeyRingError("duplicate kid in the key set")
    if len({k.has_private for k in keys}) > 1:
        raise KeyRingError("the key set mixes private (or symmetric) and public-only keys")
    return keys


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


class KeyRing:
    """The issuer's keys: exactly one ``active`` (signing) key, plus ``next`` and ``retired``.

    ``KeyRing.generate(alg)`` makes an active key and a ``next`` key, so the next key is
    published a whole rotation period before it signs anything.
    """

    def __init__(
        self, keys: list[SigningKey] | None = None, *, clock: Clock = system_clock
    ) -> None:
        self._keys: dict[str, SigningKey] = {}
        self.clock = clock
        for k in keys or []:
            self.add(k)

    # construction --------------------------------------------------------------------
    @classmethod
    def generate(
        cls, alg: str = DEFAULT_ALGORITHM, *, clock: Clock = system_clock, with_next: bool = True
    ) -> KeyRing:
        ring = cls(clock=clock)
        now = clock.now()
        ring.add(_new_key(alg, KeyState.ACTIVE, now))
        if with_next:
            ring.add(_new_key(alg, KeyState.NEXT, now))
        return ring

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], *, clock: Clock = system_clock) -> KeyRing:
        """Load a JWKS (private members included) as produced by :meth:`private_jwks`."""
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list) or not keys:
            raise KeyRingError("a JWKS needs a non-empty 'keys' array")
        return cls([key_from_jwk(k) for k in keys], clock=clock)

    def add(self, key: SigningKey) -> None:
        if key.kid in self._keys:
            raise KeyRingError(f"duplicate kid {key.kid}")
        if key.state is KeyState.ACTIVE and not key.has_private:
            raise KeyRingError("an active key needs its private part")
        if key.state is KeyState.ACTIVE and self._active() is not None:
            raise KeyRingError("a key ring has exactly one active key")
        self._keys[key.kid] = key

    # access ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SigningKey]:
        return iter(list(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        desc = ", ".join(f"{k.kid[:8]}…:{k.alg}:{k.state}" for k in self._keys.values())
        return f"KeyRing([{desc}])"

    def get(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    def _active(self) -> SigningKey | None:
        for k in self._keys.values():
            if k.state is KeyState.ACTIVE:
                return k
        return None

    @property
    def active(self) -> SigningKey:
        """The one key that signs now."""
        k = self._active()
        if k is None:
            raise KeyRingError("the key ring has no active key")
        return k

    @property
    def version(self) -> tuple[tuple[str, str], ...]:
        """Changes whenever a key is added, removed or changes state."""
        return tuple((k.kid, k.state.value) for k in self._keys.values())

    # life cycle ------------------------------------------------------------------------
    def rotate(self, alg: str | None = None) -> SigningKey:
        """Promote ``next`` to ``active``, retire the old active key, create a new ``next``.

        Returns the new active key. With no ``next`` key present one is generated and made
        active directly (verifiers will then fetch the JWKS on the unknown ``kid``).
        """
        now = self.clock.now()
        old = self._active()
        alg = alg or (old.alg if old else DEFAULT_ALGORITHM)
        nxt = next(
            (
                k
                for k in self._keys.values()
                if k.state is KeyState.NEXT and k.alg == alg and k.has_private
            ),
            None,
        )
        if nxt is None:
            nxt = _new_key(alg, KeyState.NEXT, now)
            self._keys[nxt.kid] = nxt
        if old is not None:
            old.state = KeyState.RETIRED
            old.retired_at = now
        nxt.state = KeyState.ACTIVE
        nxt.activated_at = now
        # Other ``next`` keys (another alg, or no private part) never signed anything: drop
        # them, so exactly one ``next`` key (the one created below) is published ahead.
        for k in [k for k in self._keys.values() if k.state is KeyState.NEXT]:
            del self._keys[k.kid]
        new_next = _new_key(alg, KeyState.NEXT, now)
        self._keys[new_next.kid] = new_next
        return nxt

    def remove(self, kid: str) -> None:
        """Withdraw a key (never the active one): it leaves the JWKS and verifies nothing."""
        key = self._keys.get(kid)
        if key is None:
            raise KeyRingError(f"no key {kid!r}")
        if key.state is KeyState.ACTIVE:
            raise KeyRingError("the active key cannot be removed; rotate first")
        del self._keys[kid]

    def prune(self, *, max_token_lifetime: float, jwks_cache_time: float = 300.0) -> list[str]:
        """Remove retired keys whose last token has expired and left every JWKS cache."""
        now = self.clock.now()
        gone = [
            k.kid
            for k in self._keys.values()
            if k.state is KeyState.RETIRED
            and (k.retired_at or 0.0) + max_token_lifetime + jwks_cache_time <= now
        ]
        for kid in gone:
            del self._keys[kid]
        return gone

    # JWKS --------------------------------------------------------------------------------
    def public_jwks(self) -> dict[str, Any]:
        """RFC 7517 JWK Set of the published keys: public parameters only, never symmetric."""
        return {"keys": [k.public_jwk() for k in self._keys.values() if not k.is_symmetric]}

    def private_jwks(self) -> dict[str, Any]:
        """Every key with its private parameters and state, for backup. Handle as a secret."""
        return {"keys": [k.private_jwk() for k in self._keys.values()]}

    # at rest ---------------------------------------------------------------------------------
    def to_bytes(self, kek: bytes) -> bytes:
        """The private JWKS as a compact JWE (``dir`` + A256GCM) under ``kek`` (32 bytes),
        e.g. for :meth:`tokenward.store.base.Store.save_keys`."""
        return _encrypt(orjson.dumps(self.private_jwks()), kek)

    @classmethod
    def from_bytes(cls, blob: bytes, kek: bytes, *, clock: Clock = system_clock) -> KeyRing:
        """Inverse of :meth:`to_bytes`; ``ConfigurationError`` on a wrong ``kek``."""
        try:
            doc = orjson.loads(_decrypt(blob, kek))
        except orjson.JSONDecodeError:
            raise ConfigurationError("the stored key set is not a JSON key set") from None
        return cls.from_jwks(doc, clock=clock)

    # files at rest -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, kek: bytes | None = None) -> None:
        """Write the private JWKS to ``path``.

        With a key-encryption key (32 bytes) the file is a compact JWE (``dir`` + A256GCM,
        via joserfc). Without one, plain JSON is written with mode 0600, atomically.
        """
        data = orjson.dumps(self.private_jwks())
        if kek is not None:
            data = _encrypt(data, kek)
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, kek: bytes | None = None, clock: Clock = system_clock
    ) -> KeyRing:
        """Read a file written by :meth:`save`.

        An unencrypted key file readable by group or others is refused, as ssh does.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
            mode = p.stat().st_mode
        except OSError as exc:
            raise ConfigurationError(f"cannot read key file {p}: {exc.strerror}") from None
        if raw.lstrip().startswith(b"{"):
            if kek is not None:  # fail closed: no silent downgrade to an unauthenticated file
                raise ConfigurationError(
                    f"key file {p} is not encrypted, but a key-encryption key is configured"
                )
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigurationError(
                    f"key file {p} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
                )
        else:
            if kek is None:
                raise ConfigurationError(
                    f"key file {p} is encrypted; a key-encryption key is needed"
                )
            raw = _decrypt(raw, kek)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigurationError(f"key file {p} is not a JSON key set") from None
        return cls.from_jwks(doc, clock=clock)


def _new_key(alg: str, state: KeyState, now: float) -> SigningKey:
    jwk = _generate_jwk(alg)
    return SigningKey(
        kid=_kid(jwk),
        alg=alg,
        jwk=jwk,
        state=state,
        created_at=now,
        activated_at=now if state is KeyState.ACTIVE else None,
    )


def _kek_key(kek: bytes) -> OctKey:
    if not isinstance(kek, bytes) or len(kek) != 32:
        raise ConfigurationError("the key-encryption key must be exactly 32 bytes")
    return OctKey.import_key(kek)


def _encrypt(data: bytes, kek: bytes) -> bytes:
    token = jwe.encrypt_compact(
        {"alg": "dir", "enc": "A256GCM", "cty": "jwk-set+json"}, data, _kek_key(kek)
    )
    return token.encode()


def _decrypt(raw: bytes, kek: bytes) -> bytes:
    try:
        obj = jwe.decrypt_compact(raw.strip().decode("ascii"), _kek_key(kek))
    except (JoseError, ValueError, UnicodeDecodeError):
        raise ConfigurationError("cannot decrypt the key file: wrong key-encryption key?") from None
    if obj.plaintext is None:
        raise ConfigurationError("empty key file")
    return bytes(obj.plaintext)

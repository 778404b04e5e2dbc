"""Build the attack tokens of the corpus (``tests/attacks/*.json``) from their one-line specs.

A spec says how to make the token; :class:`Forge` holds what the attacks need: the server's
real signing key (read from its store, so "valid signature" attacks are really valid), its
public serialisations (A2), attacker keys (A7, A16), a canary URL (A7) and live refresh
tokens (forged-refresh cases). The base64/JSON helpers come from ``tests/support/jose.py``.

Spec fields (all optional except ``id``/``attack``):

* ``raw``: a template; ``{h}``/``{p}``/``{s}`` are the segments of a valid token signed with
  our key, ``{rt_victim}`` a live refresh token of another client, ``{rt_canary}`` one of ours;
* ``gen``: a generator ``name[:arg]`` (see :meth:`Forge._gen`);
* ``header`` (merged over ``{"alg": "$alg", "kid": "$kid", "typ": "at+jwt"}``; the value
  ``"$drop"`` removes a member) or ``header_raw`` (JSON text);
* ``claims`` (merged over valid claims) or ``claims_raw`` (JSON text; ``$valid`` is the valid
  claims without braces, ``$valid_noexp`` the same without ``exp``);
* ``sig``: ``key`` (default), ``none``, ``flip``, ``zero:N``, ``junk:N``, ``hmac:<form>``,
  ``hmac-text:<secret>``, ``psychic:<variant>``, ``attacker:<alg>``.
Strings may use ``$kid``, ``$alg``, ``$canary``.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from support.jose import P256_N, b64, public_serialisations, rs_signature, seg
from tokenward.jws import _make_sign_function
from tokenward.keys import SigningKey

__all__ = ["Forge"]


@dataclass
class Forge:
    key: SigningKey
    issuer: str
    audience: str
    now: Callable[[], float]
    canary: str = "http://127.0.0.1:9/"
    refresh: dict[str, str] = field(default_factory=dict)
    _attackers: dict[str, Any] = field(default_factory=dict)

    # -- parts ------------------------------------------------------------------------------
    def claims(self) -> dict[str, Any]:
        now = int(self.now())
        return {
            "iss": self.issuer,
            "sub": "alice",
            "aud": self.audience,
            "exp": now + 300,
            "iat": now,
            "jti": "atk-" + secrets.token_hex(8),
            "client_id": "web",
            "scope": "read",
        }

    def _subst(self, v: Any) -> Any:
        if isinstance(v, str):
            return (
                v.replace("$kid", self.key.kid)
                .replace("$alg", self.key.alg)
                .replace("$canary", self.canary)
                .replace("$iss", self.issuer)
            )
        if isinstance(v, list):
            return [self._subst(x) for x in v]
        if isinstance(v, dict):
            return {self._subst(k): self._subst(x) for k, x in v.items()}
        return v

    def _merge(self, base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for k, v in self._subst(over).items():
            if v == "$drop":
                out.pop(k, None)
            else:
                out[k] = v
        return out

    def valid(self) -> str:
        return self.sign(seg({"alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt"}),
                         seg(self.claims()))  # fmt: skip

    def sign(self, h: str, p: str, how: str = "key") -> str:
        return f"{h}.{p}.{self._signature(h, p, how)}"

    def _attacker(self, alg: str) -> Any:
        if alg not in self._attackers:
            if alg.startswith("ES"):
                curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES256K": ec.SECP256K1()}
                self._attackers[alg] = ec.generate_private_key(curve[alg])
            elif alg in ("RS256", "PS256"):
                self._attackers[alg] = rsa.generate_private_key(65537, 2048)
            else:
                self._attackers[alg] = ed25519.Ed25519PrivateKey.generate()
        return self._attackers[alg]

    def _signature(self, h: str, p: str, how: str) -> str:
        import hmac

        msg = f"{h}.{p}".encode()
        kind, _, arg = how.partition(":")
        if kind == "key":
            return b64(_make_sign_function(self.key.alg, self.key.private_key)(msg))
        if kind == "none":
            return ""
        if kind == "flip":
            raw = bytearray(_make_sign_function(self.key.alg, self.key.private_key)(msg))
            raw[0] ^= 0x01
            return b64(bytes(raw))
        if kind == "zero":
            return b64(bytes(int(arg)))
        if kind == "junk":
            return b64(secrets.token_bytes(int(arg)))
        if kind == "hmac":
            secret = public_serialisations(self.key)[arg]
            return b64(hmac.digest(secret, msg, "sha256"))
        if kind == "hmac-text":
            return b64(hmac.digest(arg.encode(), msg, "sha256"))
        if kind == "attacker":
            alg = arg
            sign_alg = "ES256" if alg == "ES256K" else alg
            if alg == "ES256K":  # no ES256K in our signer: sign the raw r||s by hand
                from cryptography.hazmat.primitives import hashes
                from cryptography.hazmat.primitives.asymmetric.utils import (
                    decode_dss_signature,
                )

                der = self._attacker(alg).sign(msg, ec.ECDSA(hashes.SHA256()))
                r, s = decode_dss_signature(der)
                return b64(rs_signature(r, s, 32))
            return b64(_make_sign_function(sign_alg, self._attacker(alg))(msg))
        if kind == "psychic":
            good = _make_sign_function(self.key.alg, self.key.private_key)(msg)
            r, s = int.from_bytes(good[:32], "big"), int.from_bytes(good[32:], "big")
            variants = {
                "zero": bytes(64),
                "r=n,s=n": rs_signature(P256_N, P256_N, 32),
                "r=0,s=valid": rs_signature(0, s, 32),
                "r=valid,s=0": rs_signature(r, 0, 32),
                "r=1,s=1": rs_signature(1, 1, 32),
            }
            return b64(variants[arg])
        raise ValueError(f"unknown sig {how!r}")

    # -- a spec -> the token ----------------------------------------------------------------
    def build(self, spec: dict[str, Any]) -> str:
        if "gen" in spec:
            return self._gen(spec["gen"])
        if "raw" in spec:
            h, p, s = self.valid().split(".")
            return str(spec["raw"]).format(h=h, p=p, s=s, **self.refresh)
        if "header_raw" in spec:
            h = b64(self._subst(spec["header_raw"]).encode())
        else:
            base = {"alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt"}
            h = seg(self._merge(base, spec.get("header", {})))
        if "claims_raw" in spec:
            c = self.claims()
            valid = json.dumps(c, separators=(",", ":"))[1:-1]
            noexp = json.dumps({k: v for k, v in c.items() if k != "exp"}, separators=(",", ":"))
            text = str(spec["claims_raw"]).replace("$valid_noexp", noexp[1:-1])
            p = b64(text.replace("$valid", valid).encode())
        else:
            p = seg(self._merge(self.claims(), spec.get("claims", {})))
        return self.sign(h, p, spec.get("sig", "key"))

    def _gen(self, gen: str) -> str:
        name, _, arg = gen.partition(":")
        n = int(arg) if arg.isdigit() else 0
        h, p, s = self.valid().split(".")
        if name == "dots":
            return "." * n
        if name == "big_token":  # a well-formed token whose payload makes it n bytes long
            pad = "A" * max(0, n - len(h) - len(s) - 2)
            return f"{h}.{pad}.{s}"
        if name == "big_header":  # header JSON of n bytes, signed with our key
            hdr = {"alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt", "x": "a" * n}
            return self.sign(seg(hdr), p)
        if name == "nested":  # payload nested n deep, signed with our key
            return self.sign(h, b64(b'{"a":' + b"[" * n + b"]" * n + b"}"))
        if name == "big_kid":
            return self.sign(seg({"alg": self.key.alg, "kid": "A" * n, "typ": "at+jwt"}), p)
        if name == "exp_digits":  # Python's int() refuses > 4300 digits (CVE-2020-10735)
            c = self.claims()
            del c["exp"]
            text = json.dumps(c, separators=(",", ":"))[:-1] + ',"exp":' + "9" * n + "}"
            return self.sign(h, b64(text.encode()))
        if name == "aud_list":
            c = self.claims()
            c["aud"] = ["x"] * n + [self.audience]
            return self.sign(h, seg(c))
        if name == "jwe":  # a 5-segment JWE with the given alg family
            hdrs = {
                "deflate": {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "zip": "DEF"},
                "p2c": {"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2s": b64(b"saltsalt"),
                        "p2c": 2147483647},
                "ecdh": {"alg": "ECDH-ES+A128KW", "enc": "A128GCM",
                         "epk": {"kty": "EC", "crv": "P-256", "x": b64(bytes(32)),
                                 "y": b64(b"\x01" * 32)}},
                "rsa1_5": {"alg": "RSA1_5", "enc": "A128CBC-HS256"},
                "dir": {"alg": "dir", "enc": "A256GCM", "zip": "DEF"},
            }  # fmt: skip
            hdr = dict(hdrs[arg], kid=self.key.kid)
            body = b'{"u":"' + b"u" * 4_000_000 + b'","uu":"' + b"u" * 4_000_000 + b'"}'
            bomb = zlib.compress(body, 9) if arg == "deflate" else b"\x00" * 32
            return f"{seg(hdr)}.{b64(bytes(256))}.{b64(bytes(12))}.{b64(bomb)}.{b64(bytes(16))}"
        if name == "p2c_jws":  # the PBES2 header as a 3-segment JWS
            hdr = {"alg": "PBES2-HS256+A128KW", "p2s": b64(b"saltsalt"), "p2c": 2147483647,
                   "kid": self.key.kid}  # fmt: skip
            return self.sign(seg(hdr), p, "junk:32")
        if name == "json_serialisation":
            return json.dumps({"payload": p, "protected": h, "signature": s})
        if name == "pem_public":  # the public key itself sent as a token
            return self.key.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        raise ValueError(f"unknown generator {gen!r}")

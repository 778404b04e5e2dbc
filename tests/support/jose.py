"""JOSE building blocks for the attack tests: base64url and JSON segments, curve orders, the
public-key serialisations a confused verifier might use as an HMAC secret."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import serialization

from tokenward.keys import SigningKey

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seg(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return b64(raw)


def public_serialisations(key: SigningKey) -> dict[str, bytes]:
    pub = key.public_key
    enc, fmt = serialization.Encoding, serialization.PublicFormat
    pem = pub.public_bytes(enc.PEM, fmt.SubjectPublicKeyInfo)
    out = {
        "spki-pem": pem,
        "spki-pem-no-newline": pem.rstrip(b"\n"),
        "spki-pem-crlf": pem.replace(b"\n", b"\r\n"),
        "spki-der": pub.public_bytes(enc.DER, fmt.SubjectPublicKeyInfo),
        "openssh": pub.public_bytes(enc.OpenSSH, fmt.OpenSSH),
        "openssh-newline": pub.public_bytes(enc.OpenSSH, fmt.OpenSSH) + b"\n",
        "jwk-json": json.dumps(key.public_jwk()).encode(),
        "jwk-json-compact": json.dumps(key.public_jwk(), separators=(",", ":")).encode(),
        "jwks-json": json.dumps({"keys": [key.public_jwk()]}).encode(),
        "kid": key.kid.encode(),
    }
    if key.alg.startswith(("RS", "PS")):
        out["pkcs1-pem"] = pub.public_bytes(enc.PEM, fmt.PKCS1)
        out["pkcs1-der"] = pub.public_bytes(enc.DER, fmt.PKCS1)
    elif key.alg.startswith("ES"):
        out["x962-uncompressed"] = pub.public_bytes(enc.X962, fmt.UncompressedPoint)
        out["x962-compressed"] = pub.public_bytes(enc.X962, fmt.CompressedPoint)
    else:
        out["raw"] = pub.public_bytes(enc.Raw, fmt.Raw)
    return out


def rs_signature(r: int, s: int, size: int) -> bytes:
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")

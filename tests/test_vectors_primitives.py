"""Wycheproof primitive vectors through ``tokenward.jws.make_verify_function``.

Each group's key takes two paths into our verify function, and both must give Wycheproof's
answer: (1) the group's JWK through ``key_from_jwk`` (what a JWKS import does) and (2) the raw
public key (DER / raw bytes) loaded with ``cryptography``. ``invalid`` is rejected, ``valid``
accepted; ``acceptable`` cases are decided in ``ACCEPTABLE`` (documented in
``docs/security-jws.md``). Groups with parameters we never accept are still run and must be
refused as a whole (HMAC keys < 32 bytes refused at import, truncated 128-bit tags never verify).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key
from joserfc.jwk import ECKey

from support.vectors import vectors_path
from tokenward.errors import KeyRingError
from tokenward.jws import make_verify_function
from tokenward.keys import key_from_jwk

#: file -> (our algorithm, pinned number of cases)
FILES: dict[str, tuple[str, int]] = {
    "ecdsa_secp256r1_sha256_p1363_test.json": ("ES256", 262),
    "ecdsa_secp384r1_sha384_p1363_test.json": ("ES384", 280),
    "ed25519_test.json": ("EdDSA", 151),
    "rsa_signature_2048_sha256_test.json": ("RS256", 259),
    "rsa_pss_2048_sha256_mgf1_32_test.json": ("PS256", 108),
    "hmac_sha256_test.json": ("HS256", 174),
}

#: (file, tcId) -> do we accept it? Every ``acceptable`` case must be decided here.
ACCEPTABLE: dict[tuple[str, int], bool] = {
    # PKCS#1 v1.5 DigestInfo without the NULL parameter (RFC 8017 §9.2 note 2 allows
    # verifiers to accept it). OpenSSL, through ``cryptography``, rejects it; so do we.
    ("rsa_signature_2048_sha256_test.json", 8): False,
}

Verify = Callable[[bytes, bytes], bool]


@cache
def _load(name: str) -> dict[str, Any]:
    with open(vectors_path("wycheproof", name), "rb") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verifiers(name: str, group: dict[str, Any]) -> list[Verify]:
    """Our verify function for this group's key, by the JWK path and the raw-key path."""
    alg = FILES[name][0]
    if alg == "HS256":
        secret = bytes.fromhex(group["tests"][0]["key"]) if group["tests"] else b""
        jwk = {"kty": "oct", "alg": "HS256", "k": _b64(secret)}
        return [
            make_verify_function(alg, key_from_jwk(jwk).public_key),
            make_verify_function(alg, secret),
        ]
    if alg == "EdDSA":
        raw: Any = ed25519.Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(group["publicKey"]["pk"])
        )
    else:
        raw = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    given = group.get("publicKeyJwk") or group.get("keyJwk")
    # a few groups (davidben's r/s edge cases) come without a JWK: derive it from the DER key
    jwk = dict(given) if given else ECKey.import_key(raw).as_dict(private=False)
    jwk["alg"] = alg
    jwk.pop("kid", None)
    return [make_verify_function(alg, key_from_jwk(jwk).public_key), make_verify_function(alg, raw)]


def _cases() -> list[tuple[str, int]]:
    out = []
    for name in FILES:
        doc = _load(name)
        out += [(name, gi) for gi in range(len(doc["testGroups"]))]
    return out


@pytest.mark.parametrize("name", list(FILES))
def test_case_count_is_pinned(name: str) -> None:
    doc = _load(name)
    tc_ids = [t["tcId"] for g in doc["testGroups"] for t in g["tests"]]
    assert doc["numberOfTests"] == len(tc_ids) == len(set(tc_ids)) == FILES[name][1]
    acceptable = {
        t["tcId"] for g in doc["testGroups"] for t in g["tests"] if t["result"] == "acceptable"
    }
    assert acceptable == {tc for (f, tc) in ACCEPTABLE if f == name}


@pytest.mark.parametrize(("name", "gi"), _cases(), ids=lambda v: str(v).removesuffix("_test.json"))
def test_wycheproof_primitive(name: str, gi: int) -> None:
    group = _load(name)["testGroups"][gi]
    if name == "hmac_sha256_test.json":
        if group["keySize"] < 256:
            # Secrets below 32 bytes are refused at import (RFC 7518 §3.2): the whole group
            # is rejected, valid tags included.
            with pytest.raises(KeyRingError, match="32 bytes"):
                _verifiers(name, group)
            return
        if group["tagSize"] != 256:
            # Truncated tags are never accepted: every case is rejected, valid ones included.
            for tc in group["tests"]:
                for verify in _verifiers(name, {"tests": [tc]}):
                    assert not verify(bytes.fromhex(tc["msg"]), bytes.fromhex(tc["tag"]))
            return
    checked = 0
    for tc in group["tests"]:
        msg = bytes.fromhex(tc["msg"])
        sig = bytes.fromhex(tc["sig"] if "sig" in tc else tc["tag"])
        # HMAC groups carry one key per test case; the others one key per group
        verifiers = _verifiers(name, {**group, "tests": [tc]})
        if tc["result"] == "acceptable":
            expected = ACCEPTABLE[(name, tc["tcId"])]
        else:
            expected = tc["result"] == "valid"
        for verify in verifiers:
            assert verify(msg, sig) is expected, f"{name} tcId {tc['tcId']} ({tc['comment']})"
        checked += 1
    assert checked == len(group["tests"]) > 0


def test_both_key_paths_bind_the_same_algorithm() -> None:
    """A verify function is bound to one algorithm: an RS256 key cannot check PS256 input."""
    doc = _load("rsa_pss_2048_sha256_mgf1_32_test.json")
    group = doc["testGroups"][0]
    valid = next(t for t in group["tests"] if t["result"] == "valid")
    raw = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    msg, sig = bytes.fromhex(valid["msg"]), bytes.fromhex(valid["sig"])
    assert make_verify_function("PS256", raw)(msg, sig)
    assert not make_verify_function("RS256", raw)(msg, sig)


def test_make_verify_function_refuses_weak_keys() -> None:
    """Defence in depth: the primitive itself refuses what key import refuses."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    with pytest.raises(KeyRingError):
        make_verify_function("HS256", b"x" * 31)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(KeyRingError):
        make_verify_function("RS256", small)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(KeyRingError):
        make_verify_function("ES256", p384)

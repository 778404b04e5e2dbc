"""RFC vectors: RFC 7520 §4 (JWS cookbook), RFC 7515 A.1 and A.5, RFC 8037 A.3/A.4 (Ed25519).

RS256 (RFC 7520 §4.1), HS256 (§4.4, RFC 7515 A.1) and Ed25519 (RFC 8037 A.4) signatures are
deterministic, so our signing function must reproduce them byte for byte over the exact
protected-header bytes of the vector. Verification goes through ``JWSVerifier`` where the
vector has a ``kid`` and through ``make_verify_function`` (the signature layer) otherwise.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from joserfc import jws as jose_jws
from joserfc.jwk import JWKRegistry

from support.vectors import vectors_path
from tokenward import FrozenClock, Verifier
from tokenward.errors import (
    InvalidSignature,
    KeyRingError,
    MalformedToken,
    UnknownKey,
    UnsupportedAlgorithm,
)
from tokenward.jws import (
    JWSVerifier,
    _make_sign_function,
    b64url_decode,
    b64url_encode,
    make_verify_function,
)
from tokenward.keys import key_from_jwk


@cache
def _cookbook() -> dict[str, Any]:
    with open(vectors_path("rfc7520", "jws_rfc7520.json"), "rb") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _key(name: str) -> dict[str, Any]:
    with open(vectors_path("rfc7520", "keys", name), "rb") as f:
        jwk: dict[str, Any] = json.load(f)
    return jwk


def _case(alg: str) -> dict[str, Any]:
    return next(t for t in _cookbook()["tests"] if t["protected"]["alg"] == alg)


def test_cookbook_has_the_four_jws_examples() -> None:
    assert [t["protected"]["alg"] for t in _cookbook()["tests"]] == [
        "RS256",
        "PS384",
        "ES512",
        "HS256",
    ]


# --------------------------------------------------------------------------- RFC 7520 §4.1, §4.4
@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_rfc7520_signing_reproduces_the_vector(alg: str) -> None:
    case = _case(alg)
    key = key_from_jwk({**_key(case["private_key"]), "alg": alg}, require_private=True)
    h, p, s = case["compact"].split(".")
    # the vector's protected header is exactly what the RFC serialised
    assert json.loads(b64url_decode(h)) == case["protected"]
    assert b64url_decode(p).decode("utf-8") == _cookbook()["payload"]
    sig = _make_sign_function(alg, key.private_key)((h + "." + p).encode("ascii"))
    assert b64url_encode(sig) == s


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_rfc7520_compact_verifies_with_our_verifier(alg: str) -> None:
    case = _case(alg)
    key = key_from_jwk({**_key(case["public_key"]), "alg": alg})
    assert key.kid == case["protected"]["kid"]  # the given kid is kept, not replaced
    payload = JWSVerifier([key], types=None).verify_bytes(case["compact"])
    assert payload.decode("utf-8") == _cookbook()["payload"]
    # and one flipped signature bit is refused
    h, p, s = case["compact"].split(".")
    flipped = ("B" if s[0] == "A" else "A") + s[1:]
    with pytest.raises(InvalidSignature, match="signature does not verify"):
        JWSVerifier([key], types=None).verify_bytes(f"{h}.{p}.{flipped}")


@pytest.mark.parametrize("alg", ["PS384", "ES512"])
def test_rfc7520_examples_outside_our_profile(alg: str) -> None:
    """§4.2 PS384 and §4.3 ES512 verify with the reference library; our profile refuses the
    algorithm itself (key import and primitive), never the signature."""
    case = _case(alg)
    jwk = _key(case["public_key"])
    ref = jose_jws.deserialize_compact(
        case["compact"], JWKRegistry.import_key(jwk), algorithms=[alg]
    )
    assert ref.payload.decode("utf-8") == _cookbook()["payload"]
    with pytest.raises(KeyRingError, match="unsupported algorithm"):
        key_from_jwk({**jwk, "alg": alg})
    with pytest.raises(UnsupportedAlgorithm):
        make_verify_function(alg, JWKRegistry.import_key(jwk).public_key)


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES512", "HS256"])
def test_rfc7520_json_serialisations_are_refused(alg: str) -> None:
    """The general and flattened JSON forms are valid JWS; our compact-only verifier refuses
    them as malformed (never as a bad signature)."""
    case = _case(alg)
    if alg == "HS256":
        key = key_from_jwk({**_key(case["public_key"]), "alg": "HS256"})
    else:  # the cookbook's RSA key (same kid) in the one profile algorithm it can have
        key = key_from_jwk({**_key("RFC7520-RSA-public.json"), "alg": "RS256"})
    v = JWSVerifier([key], types=None)
    for form in ("general_json", "flattened_json"):
        assert isinstance(case[form], dict | str)
        text = case[form] if isinstance(case[form], str) else json.dumps(case[form])
        with pytest.raises(MalformedToken):
            v.verify_bytes(text)


# --------------------------------------------------------------------------- RFC 7515
RFC7515_A1_KEY = {
    "kty": "oct",
    "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
}
RFC7515_A1 = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
RFC7515_A5 = (
    "eyJhbGciOiJub25lIn0"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
)


def test_rfc7515_a1_hs256_signature_layer() -> None:
    """A.1: header bytes with CRLF, no ``kid``. Reproduced and verified at the signature layer;
    the full profile refuses it for the missing ``kid`` (exact-match lookup only)."""
    key = key_from_jwk({**RFC7515_A1_KEY, "alg": "HS256"})
    h, p, s = RFC7515_A1.split(".")
    assert b64url_decode(h) == b'{"typ":"JWT",\r\n "alg":"HS256"}'
    signing_input = (h + "." + p).encode("ascii")
    assert b64url_encode(_make_sign_function("HS256", key.private_key)(signing_input)) == s
    assert make_verify_function("HS256", key.public_key)(signing_input, b64url_decode(s))
    with pytest.raises(UnknownKey, match="no string 'kid'"):
        JWSVerifier([key], types=None).verify_bytes(RFC7515_A1)


def test_rfc7515_a5_unsecured_jws_is_rejected(clock: FrozenClock) -> None:
    key = key_from_jwk({**RFC7515_A1_KEY, "alg": "HS256"})
    with pytest.raises(UnsupportedAlgorithm, match="none"):
        JWSVerifier([key], types=None).verify_bytes(RFC7515_A5)
    clock.set(1300819380 - 60)
    v = Verifier([key], issuer="joe", audience="api", clock=clock)
    with pytest.raises(UnsupportedAlgorithm):
        v.verify(RFC7515_A5)


# --------------------------------------------------------------------------- RFC 8037
RFC8037_KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # A.3
RFC8037_A4 = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_rfc8037_a4_ed25519_reproduced(alg: str) -> None:
    key = key_from_jwk({**RFC8037_KEY, "alg": alg}, require_private=True)
    assert key.kid == RFC8037_THUMBPRINT  # A.3: our kid is the RFC 7638 thumbprint
    public = key_from_jwk({k: v for k, v in RFC8037_KEY.items() if k != "d"} | {"alg": alg})
    assert public.kid == RFC8037_THUMBPRINT
    h, p, s = RFC8037_A4.split(".")
    assert b64url_decode(h) == b'{"alg":"EdDSA"}'
    assert b64url_decode(p) == b"Example of Ed25519 signing"
    signing_input = (h + "." + p).encode("ascii")
    assert b64url_encode(_make_sign_function(alg, key.private_key)(signing_input)) == s
    assert make_verify_function(alg, public.public_key)(signing_input, b64url_decode(s))


def test_rfc8037_a4_full_profile_needs_the_kid() -> None:
    """The A.4 token has no ``kid``: refused by the profile; with our kid added and re-signed
    (deterministic Ed25519), the same key verifies it."""
    key = key_from_jwk({**RFC8037_KEY, "alg": "EdDSA"}, require_private=True)
    v = JWSVerifier([key], types=None)
    with pytest.raises(UnknownKey):
        v.verify_bytes(RFC8037_A4)
    h = b64url_encode(json.dumps({"alg": "EdDSA", "kid": key.kid}).encode())
    p = RFC8037_A4.split(".")[1]
    s = b64url_encode(_make_sign_function("EdDSA", key.private_key)(f"{h}.{p}".encode()))
    assert v.verify_bytes(f"{h}.{p}.{s}") == b"Example of Ed25519 signing"

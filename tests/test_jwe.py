"""Optional JWE wrapping (``tokenward.jwe``): round trips, the strict header pre-check, and the
Wycheproof ``json_web_encryption_test.json`` cases that concern our two configurations."""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe as jf_jwe
from joserfc.jwk import ECKey, OctKey

from support.vectors import vectors_path
from tokenward import FrozenClock, Issuer, KeyRing, Verifier
from tokenward.errors import (
    ConfigurationError,
    InvalidToken,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from tokenward.jwe import TokenEncryption
from tokenward.jws import b64url_encode

SECRET = bytes(range(32))
ISS = "https://issuer.example"


def _b64(obj: Any) -> str:
    return b64url_encode(orjson.dumps(obj))


def _header(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))))


def _with_header(token: str, header: dict[str, Any] | str) -> str:
    seg = header if isinstance(header, str) else _b64(header)
    return ".".join([seg, *token.split(".")[1:]])


@pytest.fixture
def ring(clock: FrozenClock) -> KeyRing:
    return KeyRing.generate("ES256", clock=clock)


@pytest.fixture
def recipient() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pair(
    ring: KeyRing, clock: FrozenClock, enc_issuer: TokenEncryption, enc_verifier: TokenEncryption
) -> tuple[Issuer, Verifier]:
    issuer = Issuer(ring, issuer=ISS, audience="api", clock=clock, encryption=enc_issuer)
    verifier = Verifier(
        ring.public_jwks(), issuer=ISS, audience="api", clock=clock, encryption=enc_verifier
    )
    return issuer, verifier


# --------------------------------------------------------------------------- round trips
def test_direct_round_trip(ring: KeyRing, clock: FrozenClock) -> None:
    enc = TokenEncryption.direct(SECRET)
    issuer, verifier = _pair(ring, clock, enc, enc)
    token = issuer.issue_access_token(sub="alice", scope="read", client_id="web")
    assert token.count(".") == 4
    assert _header(token) == {"alg": "dir", "enc": "A256GCM", "cty": "JWT"}
    assert b"alice" not in base64.urlsafe_b64decode(token.split(".")[3] + "==")
    claims = verifier.verify(token)
    assert (claims.sub, claims.scope) == ("alice", "read")
    # joserfc, given the same secret, agrees it is a nested JWT of our signed token
    inner = jf_jwe.decrypt_compact(token, OctKey.import_key(SECRET)).plaintext
    assert inner is not None and inner.count(b".") == 2


def test_ecdh_es_round_trip_issuer_needs_only_public_key(
    ring: KeyRing, clock: FrozenClock, recipient: ec.EllipticCurvePrivateKey
) -> None:
    public_jwk = ECKey.import_key(recipient.public_key()).as_dict(private=False)
    enc_pub = TokenEncryption.ecdh_es(public_jwk)
    enc_priv = TokenEncryption.ecdh_es(recipient)
    assert not enc_pub.can_decrypt and enc_priv.can_decrypt
    assert enc_pub.kid == enc_priv.kid  # both default to the RFC 7638 thumbprint
    issuer, verifier = _pair(ring, clock, enc_pub, enc_priv)
    token = issuer.issue_access_token(sub="bob", client_id="web", sid="s9")
    header = _header(token)
    assert (header["alg"], header["enc"], header["cty"], header["kid"]) == (
        "ECDH-ES+A256KW",
        "A256GCM",
        "JWT",
        enc_priv.kid,
    )
    assert verifier.verify(token).sid == "s9"
    with pytest.raises(ConfigurationError, match="private key"):
        enc_pub.decrypt(token)
    with pytest.raises(ConfigurationError, match="private key"):
        Verifier(ring.public_jwks(), issuer=ISS, audience="api", encryption=enc_pub)


def test_wrong_key_and_tampering_are_refused(ring: KeyRing, clock: FrozenClock) -> None:
    issuer, _ = _pair(ring, clock, TokenEncryption.direct(SECRET), TokenEncryption.direct(SECRET))
    token = issuer.issue_access_token(sub="alice", client_id="web")
    other = TokenEncryption.direct(b"\x01" * 32)
    with pytest.raises(InvalidToken, match="could not be decrypted"):
        other.decrypt(token)
    h, ek, iv, ct, tag = token.split(".")
    flipped = ct[:-2] + ("A" if ct[-2] != "A" else "B") + ct[-1]
    with pytest.raises(InvalidToken):
        TokenEncryption.direct(SECRET).decrypt(".".join([h, ek, iv, flipped, tag]))
    with pytest.raises(MalformedToken, match="tag"):
        TokenEncryption.direct(SECRET).decrypt(".".join([h, ek, iv, ct, b64url_encode(b"t" * 15)]))


def test_five_segments_refused_outright_without_encryption(
    ring: KeyRing, clock: FrozenClock
) -> None:
    issuer, _ = _pair(ring, clock, TokenEncryption.direct(SECRET), TokenEncryption.direct(SECRET))
    token = issuer.issue_access_token(sub="alice", client_id="web")
    plain = Verifier(ring.public_jwks(), issuer=ISS, audience="api", clock=clock)
    with pytest.raises(MalformedToken, match="JWE"):
        plain.verify(token)
    # even a "zip" bomb header never gets decoded: the segment count is enough
    bomb = _with_header(token, {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "zip": "DEF"})
    with pytest.raises(MalformedToken, match="JWE"):
        plain.verify(bomb)


def test_verifier_with_encryption_requires_jwe_unless_told(
    ring: KeyRing, clock: FrozenClock
) -> None:
    enc = TokenEncryption.direct(SECRET)
    plain_token = Issuer(ring, issuer=ISS, audience="api", clock=clock).issue_access_token(
        sub="alice", client_id="web"
    )
    strict = Verifier(ring.public_jwks(), issuer=ISS, audience="api", clock=clock, encryption=enc)
    with pytest.raises(MalformedToken, match="only encrypted"):
        strict.verify(plain_token)
    lenient = Verifier(
        ring.public_jwks(),
        issuer=ISS,
        audience="api",
        clock=clock,
        encryption=enc,
        require_encryption=False,
    )
    assert lenient.verify(plain_token).sub == "alice"


def test_configuration_errors(recipient: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        TokenEncryption.direct(b"short")
    with pytest.raises(ConfigurationError, match="P-256"):
        TokenEncryption.ecdh_es(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigurationError):
        TokenEncryption.ecdh_es({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    with pytest.raises(ConfigurationError):
        TokenEncryption("RSA1_5", encrypt_key=OctKey.import_key(SECRET), decrypt_key=None)
    with pytest.raises(ConfigurationError):
        TokenEncryption.direct(SECRET).encrypt("not-a-jws")
    r = repr(TokenEncryption.direct(SECRET)) + repr(TokenEncryption.ecdh_es(recipient))
    assert "dir" in r and SECRET.hex() not in r and "'k'" not in r and "'d'" not in r


# --------------------------------------------------------------------------- header rules
@pytest.fixture
def direct_token(ring: KeyRing, clock: FrozenClock) -> str:
    issuer = Issuer(
        ring, issuer=ISS, audience="api", clock=clock, encryption=TokenEncryption.direct(SECRET)
    )
    return issuer.issue_access_token(sub="alice", client_id="web")


@pytest.mark.parametrize(
    ("header", "error", "message"),
    [
        ({"alg": "dir", "enc": "A256GCM", "cty": "JWT", "zip": "DEF"}, MalformedToken, "zip"),
        ({"alg": "RSA1_5", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "A256KW", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "none", "enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"enc": "A256GCM", "cty": "JWT"}, UnsupportedAlgorithm, "alg"),
        ({"alg": "dir", "enc": "A128GCM", "cty": "JWT"}, UnsupportedAlgorithm, "enc"),
        ({"alg": "dir", "enc": "A256CBC-HS512", "cty": "JWT"}, UnsupportedAlgorithm, "enc"),
        ({"alg": "dir", "cty": "JWT"}, UnsupportedAlgorithm, "enc"),
        ({"alg": "dir", "enc": "A256GCM"}, MalformedToken, "cty"),
        ({"alg": "dir", "enc": "A256GCM", "cty": "json"}, MalformedToken, "cty"),
        ({"alg": "dir", "enc": "A256GCM", "cty": "JWT", "crit": ["exp"]}, MalformedToken, "crit"),
        ({"alg": "dir", "enc": "A256GCM", "cty": "JWT", "jku": "http://x"}, MalformedToken, "jku"),
        ({"alg": "dir", "enc": "A256GCM", "cty": "JWT", "p2c": 10}, MalformedToken, "p2c"),
        ({"alg": "dir", "enc": "A256GCM", "cty": "JWT", "kid": 5}, UnknownKey, "kid"),
        ('{"alg":"dir","enc":"A256GCM","cty":"JWT","enc":"A256GCM"}', MalformedToken, "duplicate"),
        ("[1,2]", MalformedToken, "object"),
    ],
)
def test_header_rules(
    direct_token: str, header: dict[str, Any] | str, error: type[Exception], message: str
) -> None:
    if isinstance(header, str):
        header = b64url_encode(header.encode())
    bad = _with_header(direct_token, header)
    with pytest.raises(error, match=message):
        TokenEncryption.direct(SECRET).decrypt(bad)


def test_non_canonical_base64_header_refused(direct_token: str) -> None:
    seg = direct_token.split(".")[0]
    with pytest.raises(MalformedToken):
        TokenEncryption.direct(SECRET).decrypt(_with_header(direct_token, seg + "="))
    with pytest.raises(MalformedToken):
        TokenEncryption.direct(SECRET).decrypt(_with_header(direct_token, seg.replace("e", "+")))


def test_size_capped_before_decoding(direct_token: str) -> None:
    huge = direct_token + "A" * 10_000
    with pytest.raises(TokenTooLarge):
        TokenEncryption.direct(SECRET).decrypt(huge)
    with pytest.raises(MalformedToken, match="five"):
        TokenEncryption.direct(SECRET).decrypt("." * 200)


class DecryptSpy:
    """Records every token handed to joserfc's ``decrypt_compact`` (where key management,
    PBES2's key derivation included, and decompression would happen)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import tokenward.jwe as jwe_module

        self.tokens: list[str] = []
        real = jwe_module.jwe.decrypt_compact

        def spy(token: Any, *args: Any, **kwargs: Any) -> Any:
            self.tokens.append(token if isinstance(token, str) else token.decode())
            return real(token, *args, **kwargs)

        monkeypatch.setattr(jwe_module.jwe, "decrypt_compact", spy)


def test_pbes2_with_huge_p2c_refused_before_any_key_derivation(
    direct_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A4: 2**31 PBKDF2 iterations would take hours; the header check refuses PBES2 before
    joserfc (and its key derivation) sees the token. Timed in ``bench/attacks.py``."""
    spy = DecryptSpy(monkeypatch)
    header = {
        "alg": "PBES2-HS256+A128KW",
        "enc": "A128GCM",
        "p2s": "c2FsdHNhbHQ",
        "p2c": 2_147_483_647,
    }
    bad = _with_header(direct_token, header)
    for enc in (
        TokenEncryption.direct(SECRET),
        TokenEncryption.ecdh_es(ec.generate_private_key(ec.SECP256R1())),
    ):
        with pytest.raises(UnsupportedAlgorithm, match="PBES2"):
            enc.decrypt(bad)
    assert spy.tokens == []
    # the spy sees what does reach joserfc: our own token
    assert TokenEncryption.direct(SECRET).decrypt(direct_token).count(".") == 2
    assert spy.tokens == [direct_token]


def test_invalid_curve_epk_refused(
    ring: KeyRing, clock: FrozenClock, recipient: ec.EllipticCurvePrivateKey
) -> None:
    enc = TokenEncryption.ecdh_es(recipient)
    token = Issuer(
        ring, issuer=ISS, audience="api", clock=clock, encryption=enc
    ).issue_access_token(sub="alice", client_id="web")
    header = _header(token)
    # Wycheproof tcId 51 "rejectsInvalidCurvePoint": its epk, transplanted into our header
    case = _wycheproof_case(51)
    off_curve = _header(case["jwe"])["epk"]
    with pytest.raises(MalformedToken, match="not a point on P-256"):
        enc.decrypt(_with_header(token, {**header, "epk": off_curve}))
    # and the vector as published is refused too (alg ECDH-ES+A128KW is not ours)
    with pytest.raises(InvalidToken):
        enc.decrypt(case["jwe"])
    bad_epks: list[Any] = [
        {**header["epk"], "crv": "P-384"},
        {**header["epk"], "kty": "OKP"},
        {**header["epk"], "d": header["epk"]["x"]},
        {k: v for k, v in header["epk"].items() if k != "y"},
        {**header["epk"], "x": b64url_encode(b"x" * 31)},
        "not-a-key",
    ]
    for epk in bad_epks:
        with pytest.raises(MalformedToken, match="epk"):
            enc.decrypt(_with_header(token, {**header, "epk": epk}))


# --------------------------------------------------------------------------- Wycheproof
@cache
def _wycheproof() -> dict[str, Any]:
    with vectors_path("wycheproof", "json_web_encryption_test.json").open() as f:
        return dict(json.load(f))


def _cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(g, t) for g in _wycheproof()["testGroups"] for t in g["tests"]]


def _wycheproof_case(tc_id: int) -> dict[str, Any]:
    return next(t for _, t in _cases() if t["tcId"] == tc_id)


def test_wycheproof_file_is_complete() -> None:
    assert len(_cases()) == _wycheproof()["numberOfTests"] == 139


def test_wycheproof_ecdh_es_a256kw_group() -> None:
    """The group keyed for ECDH-ES+A256KW on P-256 (tcId 62-68) is the one our ECDH profile
    applies to: the one valid A256GCM case decrypts to its plaintext, truncated tags are
    refused, and the other ``enc`` values (valid for Wycheproof) are refused by policy."""
    group, _ = next((g, t) for g, t in _cases() if t["tcId"] == 66)
    enc = TokenEncryption.ecdh_es(group["private"], kid=group["private"]["kid"])
    seen = set()
    for g, case in _cases():
        if g is not group:
            continue
        seen.add(case["tcId"])
        header = _header(case["jwe"])
        if case["result"] == "valid" and header["enc"] == "A256GCM":
            assert enc.decrypt_bytes(case["jwe"], nested=False) == bytes.fromhex(case["pt"])
        elif case["result"] == "valid":
            with pytest.raises(UnsupportedAlgorithm, match="enc"):
                enc.decrypt_bytes(case["jwe"], nested=False)
        else:
            with pytest.raises(InvalidToken):
                enc.decrypt_bytes(case["jwe"], nested=False)
    assert seen == set(range(62, 69))


@pytest.mark.parametrize("config", ["direct", "ecdh"])
def test_wycheproof_every_case_is_refused_by_the_other_configurations(
    config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No case of the file is accepted by a configuration it was not made for: every one
    uses another alg, enc, key or serialisation (RSA1_5 and PBES2 included). None gets past the
    strict pre-checks to joserfc's decryption: no PBES2 key derivation, no RSA decryption, no
    decompression (bounded work, counted; ``test_pbes2_...`` shows the spy sees a token that
    does get through)."""
    spy = DecryptSpy(monkeypatch)
    ecdh_key = _wycheproof()["testGroups"][1]["private"]  # P-256, ECDH-ES+A128KW in the file
    if config == "direct":
        enc = TokenEncryption.direct(SECRET)
    else:
        enc = TokenEncryption.ecdh_es(ecdh_key, kid="kid-ec-decrypt")
    for _, case in _cases():
        if config == "ecdh" and 62 <= case["tcId"] <= 68:
            continue  # the ECDH-ES+A256KW group, tested above with its own key
        jwe_value = case["jwe"] if isinstance(case["jwe"], str) else json.dumps(case["jwe"])
        with pytest.raises(InvalidToken):
            enc.decrypt_bytes(jwe_value, nested=False)
    # every one is refused by the strict pre-checks: joserfc never sees a foreign token
    assert spy.tokens == []

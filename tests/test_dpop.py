"""DPoP proofs (RFC 9449): every rejection of §4.3 and §11, the normalisation of ``htu``, RFC
7638 thumbprints, the in-process replay cache and the client-side key."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from tokenward.dpop import (
    DPOP_ALGORITHMS,
    DPoPKey,
    ReplayCache,
    access_token_hash,
    jwk_thumbprint,
    normalize_htu,
    verify_proof,
)
from tokenward.errors import InvalidDPoPProof, UseDPoPNonce
from tokenward.jws import _make_sign_function

NOW = 1_800_000_000.0
URL = "https://as.example.com/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    key: DPoPKey,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    sign_alg: str | None = None,
    sign_key: Any = None,
) -> str:
    """A proof with arbitrary header and claims, signed with ``key`` (or ``sign_key``)."""
    h: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk}
    h.update(header or {})
    c: dict[str, Any] = {"jti": "j-1", "htm": "POST", "htu": URL, "iat": int(NOW)}
    c.update(claims or {})
    for name in drop:
        h.pop(name, None)
        c.pop(name, None)
    si = b64(json.dumps(h).encode()) + "." + b64(json.dumps(c).encode())
    sign = _make_sign_function(sign_alg or key.alg, sign_key or key.private_key)
    return si + "." + b64(sign(si.encode()))


def check(proof: str, **kw: Any) -> Any:
    kw.setdefault("htm", "POST")
    kw.setdefault("htu", URL)
    kw.setdefault("now", NOW)
    return verify_proof(proof, **kw)


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate("ES256")


# ------------------------------------------------------------------ what is accepted
@pytest.mark.parametrize("alg", DPOP_ALGORITHMS)
def test_a_proof_of_every_allowed_algorithm_verifies_and_names_its_thumbprint(alg: str) -> None:
    k = DPoPKey.generate(alg)
    proof = check(k.proof("POST", URL, iat=NOW))
    assert proof.jkt == k.jkt
    assert proof.jkt == JWKRegistry.import_key(k.public_jwk).thumbprint()
    assert proof.alg == alg


@pytest.mark.parametrize(
    "htu",
    [
        "https://as.example.com/token?foo=bar",
        "https://as.example.com/token#frag",
        "https://as.example.com/token?a=1#b",
    ],
)
def test_htu_differing_only_in_query_or_fragment_is_accepted(key: DPoPKey, htu: str) -> None:
    # RFC 9449 §4.3 item 9: compared "without query and fragment parts"
    assert check(forge(key, claims={"htu": htu})).jti == "j-1"
    assert check(forge(key), htu=htu).jti == "j-1"


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://AS.EXAMPLE.COM/token",
        "https://as.example.com:443/token",
        "https://as.example.com/%74oken",
    ],
)
def test_htu_is_compared_after_rfc3986_normalisation(key: DPoPKey, htu: str) -> None:
    assert check(forge(key, claims={"htu": htu})).htu == htu


def test_normalize_htu_keeps_case_of_path_and_non_default_port() -> None:
    assert normalize_htu("HTTP://Host:80") == "http://host/"
    assert normalize_htu("http://host:8080/A%2fb?q") == "http://host:8080/A%2Fb"
    assert normalize_htu("http://[::1]:9000/x") == "http://[::1]:9000/x"


def test_ath_matching_the_access_token_is_accepted(key: DPoPKey) -> None:
    proof = key.proof("GET", "https://rs.example/api", access_token="tok", iat=NOW)
    got = check(proof, htm="GET", htu="https://rs.example/api", access_token="tok")
    assert got.ath == access_token_hash("tok")


def test_ath_is_base64url_sha256_of_the_access_token() -> None:
    # RFC 9449 §7.1 example: the access token and the ath of its proof
    at = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(at) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_thumbprint_of_the_rfc9449_example_key() -> None:
    # RFC 9449 §4.1 Figure 3 key and the jkt of §6.1's example
    jwk = {
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256",
    }
    assert jwk_thumbprint(jwk) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


# ------------------------------------------------------------------ §4.3 rejections
def test_a_missing_proof_is_refused() -> None:
    with pytest.raises(InvalidDPoPProof, match="required"):
        check(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["x", "a.b", "a.b.c.d", "!!.!!.!!", "eyJ9.e30.AA"])
def test_a_proof_that_is_not_a_compact_jws_is_refused(raw: str) -> None:
    with pytest.raises(InvalidDPoPProof):
        check(raw)


def test_an_oversized_proof_is_refused_before_decoding(key: DPoPKey) -> None:
    with pytest.raises(InvalidDPoPProof, match="longer"):
        check(forge(key, claims={"pad": "x" * 5000}))


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "dpop", None])
def test_wrong_typ_is_refused(key: DPoPKey, typ: str | None) -> None:
    proof = forge(key, drop=("typ",)) if typ is None else forge(key, header={"typ": typ})
    with pytest.raises(InvalidDPoPProof, match="typ"):
        check(proof)


def test_alg_none_is_refused(key: DPoPKey) -> None:
    h = b64(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk}).encode())
    c = b64(json.dumps({"jti": "x", "htm": "POST", "htu": URL, "iat": NOW}).encode())
    with pytest.raises(InvalidDPoPProof, match="alg"):
        check(f"{h}.{c}.")


def test_symmetric_hs256_is_refused(key: DPoPKey) -> None:
    proof = forge(
        key,
        header={"alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"k" * 32)}},
        sign_alg="HS256",
        sign_key=b"k" * 32,
    )
    with pytest.raises(InvalidDPoPProof, match="alg"):
        check(proof)


def test_an_algorithm_outside_the_allow_list_is_refused() -> None:
    sk = ec.generate_private_key(ec.SECP384R1())
    jwk = {k: v for k, v in ECKey.import_key(sk).as_dict(private=False).items()}
    k = DPoPKey.generate("ES256")
    proof = forge(k, header={"alg": "ES384", "jwk": jwk}, sign_alg="ES384", sign_key=sk)
    with pytest.raises(InvalidDPoPProof, match="alg"):
        check(proof)


def test_a_private_key_in_the_jwk_header_is_refused(key: DPoPKey) -> None:
    priv = key.to_jwk()
    priv.pop("alg")
    with pytest.raises(InvalidDPoPProof, match="private"):
        check(forge(key, header={"jwk": priv}))


@pytest.mark.parametrize("jwk", [None, "a string", {"kty": "RSA", "n": "AQAB", "e": "AQAB"}])
def test_a_missing_or_mismatched_jwk_is_refused(key: DPoPKey, jwk: Any) -> None:
    proof = forge(key, drop=("jwk",)) if jwk is None else forge(key, header={"jwk": jwk})
    with pytest.raises(InvalidDPoPProof):
        check(proof)


def test_a_jwk_on_another_curve_is_refused(key: DPoPKey) -> None:
    other = ECKey.import_key(ec.generate_private_key(ec.SECP384R1())).as_dict(private=False)
    with pytest.raises(InvalidDPoPProof):
        check(forge(key, header={"jwk": other}))


def test_an_rsa_key_below_2048_bits_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = RSAKey.import_key(small).as_dict(private=False)
    k = DPoPKey.generate("ES256")
    proof = forge(k, header={"alg": "RS256", "jwk": jwk}, sign_alg="RS256", sign_key=small)
    with pytest.raises(InvalidDPoPProof):
        check(proof)


def test_a_signature_by_another_key_than_the_jwk_is_refused(key: DPoPKey) -> None:
    other = DPoPKey.generate("ES256")
    with pytest.raises(InvalidDPoPProof, match="signature"):
        check(forge(key, sign_key=other.private_key))


@pytest.mark.parametrize("name", ["jku", "x5u", "x5c", "crit"])
def test_headers_that_point_elsewhere_are_refused(key: DPoPKey, name: str) -> None:
    with pytest.raises(InvalidDPoPProof, match=name):
        check(forge(key, header={name: ["https://attacker.example/"]}))


def test_duplicate_json_members_are_refused(key: DPoPKey) -> None:
    h = b64(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}).encode())
    raw = '{"jti":"a","jti":"b","htm":"POST","htu":"' + URL + '","iat":' + str(int(NOW)) + "}"
    si = h + "." + b64(raw.encode())
    sig = _make_sign_function("ES256", key.private_key)(si.encode())
    with pytest.raises(InvalidDPoPProof, match="duplicate"):
        check(si + "." + b64(sig))


@pytest.mark.parametrize("htm", ["GET", "post", "PUT"])
def test_htm_mismatch_is_refused(key: DPoPKey, htm: str) -> None:
    with pytest.raises(InvalidDPoPProof, match="htm"):
        check(forge(key, claims={"htm": htm}))


@pytest.mark.parametrize(
    "htu",
    [
        "https://as.example.com/token2",
        "https://as.example.com/Token",
        "http://as.example.com/token",
        "https://as.example.com:8443/token",
        "https://other.example.com/token",
        "https://as.example.com/",
    ],
)
def test_htu_mismatch_is_refused(key: DPoPKey, htu: str) -> None:
    with pytest.raises(InvalidDPoPProof, match="htu"):
        check(forge(key, claims={"htu": htu}))


@pytest.mark.parametrize("htu", ["/token", "ftp://as.example.com/token", "https://u@h/t", 7])
def test_htu_that_is_not_an_absolute_http_uri_is_refused(key: DPoPKey, htu: Any) -> None:
    with pytest.raises(InvalidDPoPProof, match="htu"):
        check(forge(key, claims={"htu": htu}))


def test_stale_iat_is_refused(key: DPoPKey) -> None:
    with pytest.raises(InvalidDPoPProof, match="too old"):
        check(forge(key, claims={"iat": int(NOW) - 120}), max_age=60)


def test_future_iat_is_refused(key: DPoPKey) -> None:
    with pytest.raises(InvalidDPoPProof, match="future"):
        check(forge(key, claims={"iat": int(NOW) + 60}))


def test_iat_inside_the_window_is_accepted(key: DPoPKey) -> None:
    assert check(forge(key, claims={"iat": int(NOW) - 50}), max_age=60).iat == NOW - 50


@pytest.mark.parametrize("iat", ["1800000000", None, True, 1e400])
def test_a_non_numeric_iat_is_refused(key: DPoPKey, iat: Any) -> None:
    proof = forge(key, drop=("iat",)) if iat is None else forge(key, claims={"iat": iat})
    with pytest.raises(InvalidDPoPProof):
        check(proof)


@pytest.mark.parametrize("jti", [None, "", 5, "x" * 300])
def test_a_missing_or_bad_jti_is_refused(key: DPoPKey, jti: Any) -> None:
    proof = forge(key, drop=("jti",)) if jti is None else forge(key, claims={"jti": jti})
    with pytest.raises(InvalidDPoPProof, match="jti"):
        check(proof)


def test_a_missing_ath_with_an_access_token_is_refused(key: DPoPKey) -> None:
    with pytest.raises(InvalidDPoPProof, match="ath"):
        check(forge(key), access_token="tok")


def test_ath_of_another_access_token_is_refused(key: DPoPKey) -> None:
    with pytest.raises(InvalidDPoPProof, match="ath"):
        check(forge(key, claims={"ath": access_token_hash("other")}), access_token="tok")


def test_a_required_nonce_that_is_missing_asks_for_the_current_one(key: DPoPKey) -> None:
    with pytest.raises(UseDPoPNonce) as info:
        check(forge(key), nonce=lambda n: n == "n1", current_nonce=lambda: "n1")
    assert info.value.nonce == "n1"
    assert info.value.error == "use_dpop_nonce"


def test_a_stale_nonce_is_refused_with_use_dpop_nonce(key: DPoPKey) -> None:
    with pytest.raises(UseDPoPNonce, match="stale"):
        check(forge(key, claims={"nonce": "old"}), nonce=lambda n: n == "n1")


def test_the_current_nonce_is_accepted(key: DPoPKey) -> None:
    assert check(forge(key, claims={"nonce": "n1"}), nonce=lambda n: n == "n1").nonce == "n1"


# ------------------------------------------------------------------ §11.1 replay
def test_replay_cache_detects_a_second_use_within_its_ttl() -> None:
    now = [NOW]
    cache = ReplayCache(clock=lambda: now[0])
    assert cache.seen("k", 60) is False
    assert cache.seen("k", 60) is True
    now[0] += 61
    assert cache.seen("k", 60) is False


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(max_entries=3, clock=lambda: NOW)
    for i in range(10):
        cache.seen(str(i), 60)
    assert len(cache) == 3
    assert cache.seen("9", 60) is True


def test_the_replay_key_binds_jti_to_the_key(key: DPoPKey) -> None:
    other = DPoPKey.generate("ES256")
    a = check(forge(key, claims={"jti": "same"}))
    b = check(forge(other, claims={"jti": "same"}))
    assert a.replay_key() != b.replay_key()
    assert a.replay_key() == check(forge(key, claims={"jti": "same"})).replay_key()


# ------------------------------------------------------------------ the client key
@pytest.mark.parametrize("alg", DPOP_ALGORITHMS)
def test_a_stored_key_loads_back_with_the_same_thumbprint(alg: str) -> None:
    k = DPoPKey.generate(alg)
    assert DPoPKey.from_jwk(k.to_jwk()).jkt == k.jkt


def test_a_key_never_shows_its_private_part() -> None:
    k = DPoPKey.generate("ES256")
    assert "d" not in k.public_jwk
    assert k.to_jwk()["d"] not in repr(k)


def test_a_public_jwk_cannot_be_loaded_as_a_client_key() -> None:
    k = DPoPKey.generate("ES256")
    with pytest.raises(Exception, match="private"):
        DPoPKey.from_jwk({**k.public_jwk, "alg": "ES256"})


def test_proofs_send_htu_without_query_and_fragment() -> None:
    k = DPoPKey.generate("ES256")
    p = k.proof("GET", "https://rs.example/a?secret=1#x")
    payload = json.loads(base64.urlsafe_b64decode(p.split(".")[1] + "=="))
    assert payload["htu"] == "https://rs.example/a"

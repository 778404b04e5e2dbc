"""KeyRing: generation, JWK(S) import/export, RFC 7638 kids, rotation states, files at rest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from tokenward import FrozenClock, Issuer, KeyRing, Verifier
from tokenward.errors import ConfigurationError, KeyRingError
from tokenward.keys import KeyState, key_from_jwk, keys_from_jwks

ASYMMETRIC = ["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519"]
ALL = [*ASYMMETRIC, "HS256"]
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
REQUIRED_BY_KTY = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
KEK = bytes(range(32))


def rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    """Independent RFC 7638 §3: required members, lexicographic order, no whitespace."""
    members = {k: jwk[k] for k in REQUIRED_BY_KTY[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- generate / JWKS
@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_public_jwks_publishes_public_members_only(alg: str, clock: FrozenClock) -> None:
    ring = KeyRing.generate(alg, clock=clock)
    keys = ring.public_jwks()["keys"]
    assert len(keys) == 2  # the active key and the next one (publish-before-sign)
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk), jwk.keys()
        assert not any(k.startswith("tw_") for k in jwk)
        assert jwk["use"] == "sig"
        assert jwk["alg"] == alg
        assert jwk["kid"] == rfc7638_thumbprint(jwk)
    assert len({k["kid"] for k in keys}) == len(keys)
    # and the document is what a verifier needs: a token of the ring verifies with it alone
    issuer = Issuer(ring, issuer="i", audience="a", clock=clock)
    v = Verifier(json.loads(json.dumps(ring.public_jwks())), issuer="i", audience="a", clock=clock)
    assert v.verify(issuer.issue_access_token(sub="s", client_id="c")).sub == "s"


def test_hs256_is_never_published(clock: FrozenClock) -> None:
    ring = KeyRing.generate("HS256", clock=clock)
    assert ring.public_jwks() == {"keys": []}
    with pytest.raises(KeyRingError, match="never published"):
        ring.active.public_jwk()
    secret = ring.active.private_key
    assert isinstance(secret, bytes) and len(secret) >= 32


@pytest.mark.parametrize("alg", ALL)
def test_private_jwks_round_trip(alg: str, clock: FrozenClock) -> None:
    ring = KeyRing.generate(alg, clock=clock)
    doc = json.loads(json.dumps(ring.private_jwks()))
    again = KeyRing.from_jwks(doc, clock=clock)
    assert [(k.kid, k.alg, k.state, k.created_at) for k in again] == [
        (k.kid, k.alg, k.state, k.created_at) for k in ring
    ]
    assert again.active.kid == ring.active.kid
    for jwk in doc["keys"]:
        assert PRIVATE_MEMBERS & set(jwk)  # a backup holds the private parts
    # a token signed by the original verifies with the copy's keys, and the other way round
    t1 = Issuer(ring, issuer="i", audience="a", clock=clock).issue_access_token(
        sub="s", client_id="c"
    )
    t2 = Issuer(again, issuer="i", audience="a", clock=clock).issue_access_token(
        sub="s", client_id="c"
    )
    assert Verifier(again, issuer="i", audience="a", clock=clock).verify(t1).sub == "s"
    assert Verifier(ring, issuer="i", audience="a", clock=clock).verify(t2).sub == "s"


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_kid_is_the_rfc7638_thumbprint_on_import_too(alg: str, clock: FrozenClock) -> None:
    jwk = KeyRing.generate(alg, clock=clock).active.public_jwk()
    del jwk["kid"]
    assert key_from_jwk(jwk).kid == rfc7638_thumbprint(jwk)


def test_unknown_algorithm_refused() -> None:
    for alg in ("RS384", "ES512", "HS512", "none", "", "PS384"):
        with pytest.raises(KeyRingError):
            KeyRing.generate(alg)


# --------------------------------------------------------------------------- key size rules
def test_rsa_below_2048_bits_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about small keys; we refuse them
        for bits in (1024, 2040):
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            small = RSAKey.import_key(private_key)
            for private in (True, False):
                with pytest.raises(KeyRingError, match="at least 2048"):
                    key_from_jwk({**small.as_dict(private=private), "alg": "RS256"})


def test_rsa_2048_bits_accepted() -> None:
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert key_from_jwk({**key.as_dict(private=False), "alg": "PS256"}).alg == "PS256"


@pytest.mark.parametrize("size", [0, 1, 16, 31])
def test_hs256_secret_below_32_bytes_refused(size: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(KeyRingError):
            key_from_jwk({"kty": "oct", "alg": "HS256", "k": b64(b"\x01" * size)})


def test_hs256_secret_of_32_bytes_or_more_accepted() -> None:
    for size in (32, 64):
        assert key_from_jwk({"kty": "oct", "alg": "HS256", "k": b64(os.urandom(size))}).is_symmetric


def test_use_and_key_ops_are_honoured(clock: FrozenClock) -> None:
    jwk = KeyRing.generate("ES256", clock=clock).active.public_jwk()
    for bad in ({"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}):
        with pytest.raises(KeyRingError):
            key_from_jwk({**jwk, **bad})
    assert key_from_jwk({**jwk, "key_ops": ["verify"]}).kid == jwk["kid"]


def test_alg_must_fit_the_key(clock: FrozenClock) -> None:
    ec = KeyRing.generate("ES256", clock=clock).active.public_jwk()
    for alg in ("ES384", "RS256", "EdDSA", "HS256"):
        with pytest.raises(KeyRingError):
            key_from_jwk({**ec, "alg": alg})


def test_key_set_with_duplicate_kid_refused(clock: FrozenClock) -> None:
    a = KeyRing.generate("ES256", clock=clock).active.public_jwk()
    b = KeyRing.generate("ES256", clock=clock).active.public_jwk()
    b["kid"] = a["kid"]
    with pytest.raises(KeyRingError, match="duplicate kid"):
        keys_from_jwks({"keys": [a, b]})
    with pytest.raises(KeyRingError, match="duplicate kid"):
        Verifier({"keys": [a, b]}, issuer="i", audience="a")


def test_key_set_mixing_private_and_public_refused(clock: FrozenClock) -> None:
    public = KeyRing.generate("ES256", clock=clock).active.public_jwk()
    secret = KeyRing.generate("HS256", clock=clock).active.private_jwk()
    with pytest.raises(KeyRingError, match="mixes"):
        keys_from_jwks({"keys": [public, secret]})
    assert len(keys_from_jwks({"keys": [public]})) == 1
    assert len(keys_from_jwks({"keys": []})) == 0


# --------------------------------------------------------------------------- states
def test_generate_states_and_timestamps(clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    states = {k.state for k in ring}
    assert states == {KeyState.ACTIVE, KeyState.NEXT}
    active = ring.active
    assert active.created_at == active.activated_at == clock.now()
    nxt = next(k for k in ring if k.state is KeyState.NEXT)
    assert nxt.activated_at is None and nxt.retired_at is None


def test_rotate_promotes_next_and_retires_active(clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    first = ring.active
    published_next = next(k for k in ring if k.state is KeyState.NEXT)
    clock.advance(3600)
    new = ring.rotate()
    assert new is published_next  # publish-before-sign
    assert new.state is KeyState.ACTIVE and new.activated_at == clock.now()
    assert first.state is KeyState.RETIRED and first.retired_at == clock.now()
    nexts = [k for k in ring if k.state is KeyState.NEXT]
    assert len(nexts) == 1 and nexts[0].created_at == clock.now()
    assert len(ring) == 3
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {k.kid for k in ring}


def test_prune_removes_retired_keys_only_after_tokens_and_caches_expire(
    clock: FrozenClock,
) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    first = ring.active.kid
    ring.rotate()
    clock.advance(900 + 300 - 1)
    assert ring.prune(max_token_lifetime=900, jwks_cache_time=300) == []
    assert ring.get(first) is not None
    clock.advance(1)
    assert ring.prune(max_token_lifetime=900, jwks_cache_time=300) == [first]
    assert ring.get(first) is None
    assert {k.state for k in ring} == {KeyState.ACTIVE, KeyState.NEXT}


def test_rotate_to_another_alg_keeps_exactly_one_next(clock: FrozenClock) -> None:
    """After an algorithm change the next rotation must still promote the published key."""
    ring = KeyRing.generate("ES256", clock=clock)
    ring.rotate("EdDSA")
    nexts = [k for k in ring if k.state is KeyState.NEXT]
    assert [k.alg for k in nexts] == ["EdDSA"]
    published = nexts[0]
    assert ring.rotate() is published
    assert [k.alg for k in ring if k.state is KeyState.NEXT] == ["EdDSA"]


def test_exactly_one_active_key(clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    doc = ring.private_jwks()
    other = KeyRing.generate("ES256", clock=clock).private_jwks()["keys"][0]
    doc["keys"].append(other)
    with pytest.raises(KeyRingError, match="exactly one active"):
        KeyRing.from_jwks(doc)
    public_only = {"keys": [KeyRing.generate("ES256", clock=clock).active.public_jwk()]}
    with pytest.raises(KeyRingError, match="private"):
        KeyRing.from_jwks(public_only)


# --------------------------------------------------------------------------- files
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_save_writes_0600_and_load_round_trips(tmp_path: Path, clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    path = tmp_path / "keys.json"
    path.write_text("{}")
    path.chmod(0o644)  # an existing, too-open file is replaced by a 0600 one
    ring.save(path)
    assert _mode(path) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))
    loaded = KeyRing.load(path, clock=clock)
    assert loaded.active.kid == ring.active.kid
    assert loaded.private_jwks() == ring.private_jwks()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_load_refuses_a_group_or_world_readable_file(
    tmp_path: Path, clock: FrozenClock, mode: int
) -> None:
    path = tmp_path / "keys.json"
    KeyRing.generate("ES256", clock=clock).save(path)
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        KeyRing.load(path)


def test_save_with_kek_encrypts(tmp_path: Path, clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    d = ring.active.private_jwk()["d"]
    path = tmp_path / "keys.jwe"
    ring.save(path, kek=KEK)
    content = path.read_bytes()
    assert d.encode() not in content
    assert b'"d"' not in content and not content.lstrip().startswith(b"{")
    assert _mode(path) == 0o600
    assert KeyRing.load(path, kek=KEK, clock=clock).active.kid == ring.active.kid
    with pytest.raises(ConfigurationError, match="key-encryption key is needed"):
        KeyRing.load(path)
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        KeyRing.load(path, kek=bytes(32))
    with pytest.raises(ConfigurationError, match="32 bytes"):
        ring.save(tmp_path / "x", kek=b"short")


def test_load_with_kek_refuses_a_plaintext_file(tmp_path: Path, clock: FrozenClock) -> None:
    """With a KEK configured, a plaintext key file (which anyone able to write the file could
    have planted) is refused rather than silently trusted."""
    path = tmp_path / "keys.json"
    KeyRing.generate("ES256", clock=clock).save(path)
    with pytest.raises(ConfigurationError, match="not encrypted"):
        KeyRing.load(path, kek=KEK)


def test_load_errors_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        KeyRing.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    bad.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not a JSON key set"):
        KeyRing.load(bad)


# --------------------------------------------------------------------------- no key material
@pytest.mark.parametrize("alg", ALL)
def test_repr_never_shows_key_material(alg: str, clock: FrozenClock) -> None:
    ring = KeyRing.generate(alg, clock=clock)
    secrets_ = [
        str(v)
        for jwk in ring.private_jwks()["keys"]
        for k, v in jwk.items()
        if k in PRIVATE_MEMBERS
    ]
    assert secrets_
    texts = [repr(ring), str(ring), *(repr(k) for k in ring), *(str(k) for k in ring)]
    for text in texts:
        for s in secrets_:
            assert s not in text and s[:16] not in text


def test_key_errors_do_not_echo_key_material() -> None:
    secret = b64(b"s3cr3t-material!" * 1)
    with pytest.raises(KeyRingError) as info:
        key_from_jwk({"kty": "oct", "alg": "HS256", "k": secret})
    assert secret not in str(info.value)

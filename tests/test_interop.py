"""Interop: tokens we issue verify with PyJWT and joserfc given only ``ring.public_jwks()``
(HS256: the shared secret), and tokens PyJWT and joserfc produce in our profile verify with
our ``Verifier``."""

from __future__ import annotations

import json
import warnings
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import JWKRegistry, KeySet, OctKey

from tokenward import FrozenClock, Issuer, KeyRing, Verifier

ISS = "https://issuer.example"
AUD = "api"
ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519", "HS256"]
NOW = 1_800_000_000


@pytest.fixture(params=ALGS)
def ring(request: pytest.FixtureRequest, clock: FrozenClock) -> KeyRing:
    return KeyRing.generate(request.param, clock=clock)


def _issue(ring: KeyRing, clock: FrozenClock) -> str:
    issuer = Issuer(ring, issuer=ISS, audience=AUD, clock=clock)
    return issuer.issue_access_token(sub="alice", scope="read write", sid="s1", client_id="web")


def _published(ring: KeyRing) -> dict[str, Any]:
    """What a remote verifier gets: the JWKS through JSON (or, for HS256, nothing)."""
    doc: dict[str, Any] = json.loads(json.dumps(ring.public_jwks()))
    return doc


def test_pyjwt_verifies_our_tokens_from_public_jwks(ring: KeyRing, clock: FrozenClock) -> None:
    token = _issue(ring, clock)
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["kid"] == ring.active.kid
    if ring.active.alg == "Ed25519":
        # Known limitation of PyJWT (2.15): it knows Ed25519 keys only under RFC 8037's
        # "EdDSA", not RFC 9864's "Ed25519"; a ring meant for PyJWT consumers uses "EdDSA".
        # When PyJWT learns the name this raises no more: then widen the test.
        with pytest.raises(pyjwt.PyJWKSetError):
            pyjwt.PyJWKSet.from_dict(_published(ring))
        return
    if ring.active.alg == "HS256":
        key: Any = ring.active.private_key
    else:
        jwks = pyjwt.PyJWKSet.from_dict(_published(ring))
        key = next(k for k in jwks.keys if k.key_id == header["kid"]).key
    claims = pyjwt.decode(
        token,
        key,
        algorithms=[header["alg"]],
        audience=AUD,
        issuer=ISS,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"], "verify_iat": False},
        leeway=0,
        # PyJWT checks exp against the wall clock; our frozen clock is in the future of it
    )
    assert claims["sub"] == "alice" and claims["client_id"] == "web" and claims["sid"] == "s1"
    assert claims["exp"] - claims["iat"] == 900


def test_joserfc_verifies_our_tokens_from_public_jwks(ring: KeyRing, clock: FrozenClock) -> None:
    token = _issue(ring, clock)
    if ring.active.alg == "HS256":
        key: Any = OctKey.import_key(ring.active.private_key)
    else:
        key = KeySet.import_key_set(_published(ring))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as deprecated (RFC 9864)
        tok = jose_jwt.decode(token, key, algorithms=[ring.active.alg])
    assert tok.header["typ"] == "at+jwt"
    registry = jose_jwt.JWTClaimsRegistry(
        now=int(clock.now()),
        iss={"essential": True, "value": ISS},
        aud={"essential": True, "value": AUD},
        sub={"essential": True, "value": "alice"},
        client_id={"essential": True, "value": "web"},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    registry.validate(tok.claims)
    assert tok.claims["scope"] == "read write"


def _profile_claims(now: int) -> dict[str, Any]:
    return {
        "iss": ISS,
        "sub": "bob",
        "aud": [AUD, "other"],
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": "peer-1",
        "client_id": "peer",
        "scope": "read",
    }


def _verifier(ring: KeyRing, clock: FrozenClock) -> Verifier:
    keys: Any = ring if ring.active.alg == "HS256" else _published(ring)
    return Verifier(keys, issuer=ISS, audience=AUD, clock=clock)


def test_tokens_from_pyjwt_verify_with_ours(ring: KeyRing, clock: FrozenClock) -> None:
    alg = ring.active.alg
    if alg == "Ed25519":
        pytest.skip("PyJWT signs Ed25519 keys only under the name EdDSA (covered by EdDSA)")
    claims = _profile_claims(int(clock.now()))
    token = pyjwt.encode(
        claims,
        ring.active.private_key,
        algorithm=alg,
        headers={"kid": ring.active.kid, "typ": "at+jwt"},
    )
    got = _verifier(ring, clock).verify(token)
    assert got.raw == claims
    assert (got.sub, got.aud, got.client_id) == ("bob", (AUD, "other"), "peer")


def test_tokens_from_joserfc_verify_with_ours(ring: KeyRing, clock: FrozenClock) -> None:
    alg = ring.active.alg
    key = JWKRegistry.import_key(
        {k: v for k, v in ring.active.private_jwk().items() if not k.startswith("tw_")}
    )
    claims = _profile_claims(int(clock.now()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = jose_jwt.encode(
            {"alg": alg, "kid": ring.active.kid, "typ": "at+jwt"}, claims, key, algorithms=[alg]
        )
    got = _verifier(ring, clock).verify(token)
    assert got.raw == claims
    assert got.jti == "peer-1" and got.nbf == claims["nbf"]


def test_peer_tokens_without_our_profile_are_refused(clock: FrozenClock) -> None:
    """The peers' default output (typ JWT, no kid) is not an access token of our profile."""
    ring = KeyRing.generate("ES256", clock=clock)
    token = pyjwt.encode(_profile_claims(int(clock.now())), ring.active.private_key, "ES256")
    from tokenward.errors import InvalidToken

    with pytest.raises(InvalidToken):
        _verifier(ring, clock).verify(token)

"""Round trips through the public contract (KeyRing, Issuer, Verifier), for every algorithm."""

from __future__ import annotations

import pytest

from tokenward import ExpiredToken, FrozenClock, InvalidToken, Issuer, KeyRing, Verifier
from tokenward.errors import InvalidSignature, UnknownKey

ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519", "HS256"]


@pytest.mark.parametrize("alg", ALGS)
def test_issue_then_verify(alg: str, clock: FrozenClock) -> None:
    ring = KeyRing.generate(alg, clock=clock)
    issuer = Issuer(ring, issuer="http://127.0.0.1:8000", audience="api", clock=clock)
    at = issuer.issue_access_token(sub="alice", scope="read", sid="s1", client_id="web")
    jwks = ring if alg == "HS256" else ring.public_jwks()
    v = Verifier(jwks, issuer="http://127.0.0.1:8000", audience="api", clock=clock)
    claims = v.verify(at)
    assert (claims.sub, claims.scope, claims.sid, claims.client_id) == (
        "alice",
        "read",
        "s1",
        "web",
    )
    assert claims.exp - claims.iat == 900
    # cached path gives the same object and still honours exp
    assert v.verify(at) is claims
    clock.advance(900 + 30)
    with pytest.raises(ExpiredToken, match="expired at"):
        v.verify(at)


def test_other_key_is_rejected(clock: FrozenClock) -> None:
    a = KeyRing.generate("ES256", clock=clock)
    b = KeyRing.generate("ES256", clock=clock)
    at = Issuer(a, issuer="i", audience="api", clock=clock).issue_access_token(
        sub="alice", client_id="web"
    )
    with pytest.raises(UnknownKey):
        Verifier(b.public_jwks(), issuer="i", audience="api", clock=clock).verify(at)
    forged_kid = b.public_jwks()["keys"][0]
    forged_kid["kid"] = a.active.kid
    with pytest.raises(InvalidSignature):
        Verifier({"keys": [forged_kid]}, issuer="i", audience="api", clock=clock).verify(at)


def test_rotation_publishes_next_before_it_signs(clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    published = {k["kid"] for k in ring.public_jwks()["keys"]}
    issuer = Issuer(ring, issuer="i", audience="api", clock=clock)
    old = issuer.issue_access_token(sub="a", client_id="c")
    new_active = ring.rotate()
    assert new_active.kid in published  # verifiers knew it before it signed
    v = Verifier({"keys": [k for k in ring.public_jwks()["keys"]]}, issuer="i", audience="api")
    v.clock = clock
    new = issuer.issue_access_token(sub="a", client_id="c")
    assert v.verify(old).sub == v.verify(new).sub == "a"
    clock.advance(900 + 300)
    assert ring.prune(max_token_lifetime=900, jwks_cache_time=300)
    v.set_keys(ring.public_jwks())
    with pytest.raises(InvalidToken):
        v.verify(old)

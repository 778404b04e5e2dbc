"""Hypothesis fuzzing of the strict JWS verifier (in process, every algorithm we sign with).

Properties, for any input: ``Verifier.verify`` either returns claims or raises a subclass of
``InvalidToken`` (nothing outside the error tree, no hang); a mutated token verifies only when
it is character for character one we signed; a forged header with our real signature is
accepted only when it is exactly our profile (alg = the key's one alg, our kid, typ at+jwt).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.strategies import b64, claim_objects, header_objects, mutated, token_like
from tokenward import FrozenClock, Issuer, KeyRing, Verifier
from tokenward.errors import InvalidToken
from tokenward.jws import _make_sign_function

ISS, AUD = "https://issuer.example", "api"
ALGS = ["ES256", "RS256", "EdDSA", "HS256"]
FUZZ = settings(
    max_examples=int(os.environ.get("TOKENWARD_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Target:
    def __init__(self, alg: str) -> None:
        self.clock = FrozenClock(1_800_000_000.0)
        self.ring = KeyRing.generate(alg, clock=self.clock, with_next=False)
        self.issuer = Issuer(self.ring, issuer=ISS, audience=AUD, clock=self.clock)
        self.verifier = Verifier(
            self.ring, issuer=ISS, audience=AUD, clock=self.clock, cache_size=0
        )
        self.valid = [
            self.issuer.issue_access_token(sub="alice", scope="read", sid="s1", client_id="web")
            for _ in range(2)
        ]
        self.key = self.ring.active
        self.sign = _make_sign_function(alg, self.key.private_key)
        self.outcomes: dict[str, int] = {}

    def verify(self, token: str) -> Any:
        try:
            claims = self.verifier.verify(token)
        except InvalidToken as exc:  # the only acceptable failure
            self.outcomes[type(exc).__name__] = self.outcomes.get(type(exc).__name__, 0) + 1
            return None
        self.outcomes["accepted"] = self.outcomes.get("accepted", 0) + 1
        return claims


@pytest.fixture(scope="module", params=ALGS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = Target(request.param)
    yield t
    assert sum(t.outcomes.values()) > 0


@FUZZ
@given(data=st.data())
def test_any_token_is_claims_or_invalid_token(target: Target, data: st.DataObject) -> None:
    token = data.draw(token_like(target.valid, [target.key.kid, "evil"]))
    claims = target.verify(token)
    if claims is not None:
        assert token in target.valid, "a token we did not sign was accepted"


@FUZZ
@given(data=st.data())
def test_mutations_of_real_tokens_never_verify(target: Target, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(target.valid))
    token = data.draw(mutated(original))
    if token == original:
        return
    assert target.verify(token) is None


@FUZZ
@given(data=st.data())
def test_fuzzed_headers_with_our_real_signature(target: Target, data: st.DataObject) -> None:
    """The signature is genuine: only the header decides, and only our exact profile passes."""
    header = data.draw(header_objects([target.key.kid]))
    if data.draw(st.booleans()):
        header = {"alg": target.key.alg, "kid": target.key.kid, "typ": "at+jwt", **header}
    plausible = {"iss": ISS, "sub": "alice", "aud": AUD, "exp": 1_800_000_600,
                 "iat": 1_800_000_000, "jti": "j", "client_id": "web"}  # fmt: skip
    claims = data.draw(claim_objects(plausible))
    h, p = b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())
    token = f"{h}.{p}.{b64(target.sign(f'{h}.{p}'.encode()))}"
    got = target.verify(token)
    if got is not None:
        assert header.get("alg") == target.key.alg or (
            {header.get("alg"), target.key.alg} == {"EdDSA", "Ed25519"}
        )
        assert header.get("kid") == target.key.kid and header.get("typ") == "at+jwt"
        # unknown members are ignored (RFC 7515 §4); these never are
        assert not set(header) & {"crit", "jku", "jwk", "x5u", "x5c", "zip", "enc", "b64"}
        assert got.iss == ISS and AUD in got.aud


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_raw_bytes_never_verify_and_fail_inside_the_error_tree(raw: bytes) -> None:
    """Random bytes carry no signature of ours: always refused, always as ``InvalidToken``."""
    with pytest.raises(InvalidToken):
        _shared().verify(raw.decode("latin-1"))


_V: list[Verifier] = []


def _shared() -> Verifier:
    if not _V:
        _V.append(Target("ES256").verifier)
    return _V[0]

"""``Verifier`` behaviour: the verified-token cache (bounded, off, exp, revocation, key changes),
JWE on/off, and the hot-path helpers it relies on (strict base64url)."""

from __future__ import annotations

import base64
import binascii
import random

import orjson
import pytest

from tokenward import FrozenClock, Issuer, KeyRing, Verifier
from tokenward.claims import AccessTokenClaims
from tokenward.errors import (
    ConfigurationError,
    ExpiredToken,
    InvalidClaims,
    InvalidSignature,
    MalformedToken,
    RevokedToken,
    TokenTooLarge,
    UnknownKey,
)
from tokenward.jwe import TokenEncryption
from tokenward.jws import _make_sign_function, b64url_decode, b64url_encode

ISS = "https://issuer.example"


class FakeRevocation:
    """A RevocationCheck that revokes by jti, sid or subject, and counts its calls."""

    def __init__(self) -> None:
        self.jtis: set[str] = set()
        self.sids: set[str] = set()
        self.subjects: set[str] = set()
        self.calls = 0

    def check(self, claims: AccessTokenClaims) -> None:
        self.calls += 1
        if claims.jti in self.jtis or claims.sid in self.sids or claims.sub in self.subjects:
            raise RevokedToken("token revoked")


@pytest.fixture
def ring(clock: FrozenClock) -> KeyRing:
    return KeyRing.generate("ES256", clock=clock)


@pytest.fixture
def issuer(ring: KeyRing, clock: FrozenClock) -> Issuer:
    return Issuer(ring, issuer=ISS, audience="api", clock=clock)


def _verifier(ring: KeyRing, clock: FrozenClock, **kw: object) -> Verifier:
    return Verifier(ring.public_jwks(), issuer=ISS, audience="api", clock=clock, **kw)  # type: ignore[arg-type]


def test_cache_hit_returns_same_claims(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    first = v.verify(token)
    assert v.verify("".join(token)) is first  # an equal, fresh str hits the cache
    assert len(v._cache) == 1


def test_cache_is_bounded(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock, cache_size=3)
    tokens = [issuer.issue_access_token(sub=f"u{i}", client_id="web") for i in range(5)]
    for t in tokens:
        v.verify(t)
        assert len(v._cache) <= 3
    assert list(v._cache) == tokens[2:]  # the oldest were evicted first
    assert v.verify(tokens[0]).sub == "u0"  # an evicted token still verifies (uncached)


def test_cache_size_zero_turns_it_off(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock, cache_size=0)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    a, b = v.verify(token), v.verify(token)
    assert a == b and a is not b
    assert v._cache == {}


def test_cache_honours_exp_with_leeway(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock, leeway=10)
    token = issuer.issue_access_token(sub="alice", client_id="web", ttl=60)
    v.verify(token)
    clock.advance(60 + 9)
    assert v.verify(token).sub == "alice"  # inside the leeway, from the cache
    clock.advance(1)
    with pytest.raises(ExpiredToken, match="expired at"):
        v.verify(token)
    assert token not in v._cache
    with pytest.raises(ExpiredToken):  # and uncached it is expired too
        v.verify(token)


def test_cache_honours_revocation(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    rev = FakeRevocation()
    v = _verifier(ring, clock, revocation=rev)
    t1 = issuer.issue(sub="alice", client_id="web", sid="s1")
    t2 = issuer.issue(sub="bob", client_id="web", sid="s2")
    t3 = issuer.issue(sub="carol", client_id="web", sid="s3")
    for t in (t1, t2, t3):
        v.verify(t.token)
    assert rev.calls == 3
    v.verify(t1.token)
    assert rev.calls == 4  # a hit is checked again
    rev.jtis.add(t1.jti)
    rev.sids.add("s2")
    rev.subjects.add("carol")
    for t in (t1, t2, t3):
        with pytest.raises(RevokedToken):
            v.verify(t.token)
    rev.jtis.clear()
    assert v.verify(t1.token).sub == "alice"


def test_revoked_token_is_never_cached(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    rev = FakeRevocation()
    rev.subjects.add("alice")
    v = _verifier(ring, clock, revocation=rev)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    with pytest.raises(RevokedToken):
        v.verify(token)
    assert v._cache == {}


def test_invalid_tokens_are_never_cached(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock)
    token = issuer.issue_access_token(sub="alice", client_id="web", audience="other")
    with pytest.raises(InvalidClaims):
        v.verify(token)
    h, p, s = issuer.issue_access_token(sub="alice", client_id="web").split(".")
    forged = f"{h}.{p}.{s[:-2]}{'AA' if s[-2:] != 'AA' else 'AQ'}"
    with pytest.raises((InvalidSignature, MalformedToken)):
        v.verify(forged)
    assert v._cache == {}


def test_set_keys_clears_cache_and_drops_removed_keys(
    issuer: Issuer, ring: KeyRing, clock: FrozenClock
) -> None:
    v = _verifier(ring, clock)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    v.verify(token)
    other = KeyRing.generate("ES256", clock=clock)
    v.set_keys(other.public_jwks())
    assert v._cache == {}
    with pytest.raises(UnknownKey):
        v.verify(token)  # not served from a stale cache
    v.set_keys(ring)
    assert v.verify(token).sub == "alice"
    v.clear_cache()
    assert v._cache == {}


def test_size_cap_and_type_checked_first(ring: KeyRing, clock: FrozenClock) -> None:
    v = _verifier(ring, clock, max_token_size=100)
    with pytest.raises(TokenTooLarge):
        v.verify("a" * 101)
    with pytest.raises(MalformedToken):
        v.verify(b"a.b.c")  # type: ignore[arg-type]
    with pytest.raises(MalformedToken, match="three segments"):
        v.verify("a.b")


def test_bad_configuration(ring: KeyRing) -> None:
    for kw in ({"cache_size": -1}, {"leeway": -1}, {"max_token_size": 0}):
        with pytest.raises(ConfigurationError):
            Verifier(ring.public_jwks(), issuer=ISS, audience="api", **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Verifier(ring.public_jwks(), issuer="", audience="api")


def test_jwe_off_refuses_five_segments(issuer: Issuer, ring: KeyRing, clock: FrozenClock) -> None:
    enc = TokenEncryption.direct(b"k" * 32)
    encrypted = Issuer(
        ring, issuer=ISS, audience="api", clock=clock, encryption=enc
    ).issue_access_token(sub="alice", client_id="web")
    with pytest.raises(MalformedToken, match="JWE"):
        _verifier(ring, clock).verify(encrypted)


def test_jwe_on_verifies_and_caches(ring: KeyRing, clock: FrozenClock) -> None:
    enc = TokenEncryption.direct(b"k" * 32)
    issuer = Issuer(ring, issuer=ISS, audience="api", clock=clock, encryption=enc)
    v = _verifier(ring, clock, encryption=enc)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    claims = v.verify(token)
    assert claims.sub == "alice" and v.verify(token) is claims
    plain = Issuer(ring, issuer=ISS, audience="api", clock=clock).issue_access_token(
        sub="alice", client_id="web"
    )
    with pytest.raises(MalformedToken, match="only encrypted"):
        v.verify(plain)
    lenient = _verifier(ring, clock, encryption=enc, require_encryption=False)
    assert lenient.verify(plain).sub == lenient.verify(token).sub == "alice"


# --------------------------------------------------------------------------- b64url_decode
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _reference_decode(seg: str) -> bytes:
    """The plain definition: alphabet only, no padding, canonical trailing bits."""
    if len(seg) % 4 == 1 or any(c not in _ALPHABET for c in seg):
        raise MalformedToken("invalid")
    raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != seg:
        raise MalformedToken("non-canonical")
    return raw


def test_b64url_decode_matches_the_definition() -> None:
    rnd = random.Random(7)
    extra = "=+/ \n\t.!*\x00é€"
    cases = ["", "A", "AA", "AQ", "AB", "AAA", "AAE", "AAB", "AAAA", "_-_-", "AA==", "A+/A"]
    for _ in range(20_000):
        n = rnd.randrange(0, 14)
        cases.append(
            "".join(
                rnd.choice(extra) if rnd.random() < 0.08 else rnd.choice(_ALPHABET)
                for _ in range(n)
            )
        )
    for seg in cases:
        try:
            want: bytes | None = _reference_decode(seg)
        except (MalformedToken, binascii.Error, ValueError):
            want = None
        if want is None:
            with pytest.raises(MalformedToken):
                b64url_decode(seg)
        else:
            assert b64url_decode(seg) == want, seg


# --------------------------------------------------------------------------- typ: at+jwt
def _signed_with_header(ring: KeyRing, clock: FrozenClock, header: dict[str, object]) -> str:
    """Valid claims signed with our real key under ``header`` (merged over alg and kid)."""
    key = ring.active
    full = {"alg": key.alg, "kid": key.kid, **header}
    claims = {"iss": ISS, "sub": "alice", "aud": "api", "client_id": "web", "jti": "j1",
              "iat": int(clock.now()), "exp": int(clock.now()) + 300}  # fmt: skip
    seg = [b64url_encode(orjson.dumps(part)) for part in (full, claims)]
    sig = _make_sign_function(key.alg, key.private_key)(f"{seg[0]}.{seg[1]}".encode())
    return f"{seg[0]}.{seg[1]}.{b64url_encode(sig)}"


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt"])
def test_rfc9068_2_1_access_token_typ_is_accepted(
    ring: KeyRing, clock: FrozenClock, typ: str
) -> None:
    """RFC 9068 §2.1: an access token's ``typ`` is ``at+jwt`` (or ``application/at+jwt``),
    compared case-insensitively as a media type (RFC 7515 §4.1.9)."""
    token = _signed_with_header(ring, clock, {"typ": typ})
    assert _verifier(ring, clock).verify(token).sub == "alice"


@pytest.mark.parametrize(
    "header",
    [{}, {"typ": "JWT"}, {"typ": "jwt"}, {"typ": ""}, {"typ": "at+jwt "}, {"typ": "dpop+jwt"},
     {"typ": "application/jwt"}, {"typ": None}, {"typ": ["at+jwt"]}, {"typ": 1}],
    ids=repr,
)  # fmt: skip
def test_rfc9068_4_token_without_the_at_jwt_typ_is_refused(
    ring: KeyRing, clock: FrozenClock, header: dict[str, object]
) -> None:
    """RFC 9068 §4 and RFC 8725 §3.11: a signed JWT of another type (an ID token, a plain JWT)
    is never accepted as an access token, even with our real signature and valid claims."""
    token = _signed_with_header(ring, clock, header)
    with pytest.raises(MalformedToken, match="typ must be one of"):
        _verifier(ring, clock).verify(token)


def test_issued_access_tokens_carry_typ_at_jwt(issuer: Issuer) -> None:
    token = issuer.issue_access_token(sub="alice", client_id="web")
    assert orjson.loads(b64url_decode(token.split(".")[0]))["typ"] == "at+jwt"

"""Differential test: our ``Verifier`` against joserfc configured with the same rules.

Hypothesis draws claims (times around the boundaries, issuers, audiences, types) and mutations
of a validly signed token: bit flips in each segment, base64 character substitutions, header
edits re-signed with the real key, claim edits re-signed. For every input our verifier accepts
exactly when the oracle accepts, and then returns the same claims.

The oracle is ``joserfc.jwt.decode`` + ``JWTClaimsRegistry`` (same alg, key, iss, aud,
exp/nbf/iat, leeway, required claims) plus the profile rules joserfc cannot be told, each
written out below (``_profile_header_ok``, ``_StrictJSON``, ``_extra_claims_ok``):
size cap, canonical base64url, ``kid`` exact match, ``typ`` at+jwt, no
``crit``/``jku``/``x5u``/``jwk``/``x5c``/``x5t``/``b64``/``zip``/``enc``, JSON without
duplicate names / NaN / numbers beyond the double range (what orjson reads),
``sub``/``jti``/``client_id`` non-empty strings, ``scope``/``sid`` strings, ``cnf`` (when
present) an object with a non-empty string ``jkt`` (RFC 9449 §6.1: a binding that cannot be read
must not be ignored).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import warnings
from functools import cache
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, OctKey

from tokenward import FrozenClock, KeyRing, Verifier
from tokenward.errors import InvalidToken
from tokenward.jws import _make_sign_function

ISS = "https://issuer.example"
AUD = "api"
NOW = 1_800_000_000
MAX = 8192
FORBIDDEN = {"crit", "jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc"}
TYPES = {"at+jwt", "application/at+jwt"}


# --------------------------------------------------------------------------- keys (once)
@cache
def _ring(alg: str) -> KeyRing:
    return KeyRing.generate(alg, clock=FrozenClock(NOW), with_next=False)


def _oracle_key(alg: str) -> Any:
    ring = _ring(alg)
    if alg == "HS256":
        return OctKey.import_key(ring.active.private_key)
    # without its "alg" member: joserfc would otherwise refuse the RFC 9864 name "Ed25519"
    # for a key published as "EdDSA"; our profile understands both names, and
    # the allowed algorithms are given to decode() instead
    jwk = {k: v for k, v in ring.public_jwks()["keys"][0].items() if k != "alg"}
    return JWKRegistry.import_key(jwk)


# --------------------------------------------------------------------------- encoding
def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def sign(alg: str, header: bytes, payload: bytes) -> str:
    h, p = b64e(header), b64e(payload)
    fn = _make_sign_function(alg, _ring(alg).active.private_key)
    return f"{h}.{p}.{b64e(fn(f'{h}.{p}'.encode()))}"


# --------------------------------------------------------------------------- the oracle
def _no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate member")
    return d


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(text)
    return v


def _int_within_double_range(text: str) -> int:
    """orjson reads integers beyond 64 bits as doubles (we then re-parse them exactly) and
    refuses a number whose magnitude overflows a double; so does the profile."""
    v = int(text)
    float(v)  # OverflowError (an ArithmeticError, not a ValueError): caught by the oracle
    return v


class _StrictJSON(json.JSONDecoder):
    def __init__(self, **kw: Any) -> None:
        kw.update(
            object_pairs_hook=_no_dups,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_int_within_double_range,
        )
        super().__init__(**kw)


def _canonical(seg: str) -> bool:
    if not all(c.isascii() and (c.isalnum() or c in "-_") for c in seg):
        return False
    try:
        return b64e(b64d(seg)) == seg
    except (binascii.Error, ValueError):
        return False


def _profile_header_ok(token: str, kid: str) -> bool:
    parts = token.split(".")
    if len(token) > MAX or len(parts) != 3 or not all(_canonical(s) for s in parts):
        return False
    try:
        header = json.loads(b64d(parts[0]).decode("utf-8"), cls=_StrictJSON)
    except (ValueError, ArithmeticError, UnicodeDecodeError, RecursionError):
        return False
    if type(header) is not dict or FORBIDDEN & header.keys():
        return False
    typ = header.get("typ")
    return header.get("kid") == kid and type(typ) is str and typ.lower() in TYPES


def _extra_claims_ok(claims: dict[str, Any]) -> bool:
    for name in ("sub", "jti", "client_id"):
        if type(claims.get(name)) is not str or not claims[name]:
            return False
    if "cnf" in claims:
        cnf = claims["cnf"]
        if type(cnf) is not dict or type(cnf.get("jkt")) is not str or not cnf["jkt"]:
            return False
    return all(claims.get(n) is None or type(claims[n]) is str for n in ("scope", "sid"))


def oracle(alg: str, token: str, now: int, leeway: int) -> dict[str, Any] | None:
    if not _profile_header_ok(token, _ring(alg).active.kid):
        return None
    algs = ["EdDSA", "Ed25519"] if alg == "EdDSA" else [alg]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as deprecated (RFC 9864)
            tok = jose_jwt.decode(token, _oracle_key(alg), algorithms=algs, decoder_cls=_StrictJSON)
        registry = jose_jwt.JWTClaimsRegistry(
            now=now,
            leeway=leeway,
            iss={"essential": True, "value": ISS},
            aud={"essential": True, "value": AUD},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )
        registry.validate(tok.claims)
    except (JoseError, ValueError, ArithmeticError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    return tok.claims if _extra_claims_ok(tok.claims) else None


def ours(alg: str, token: str, now: int, leeway: int) -> dict[str, Any] | None:
    ring = _ring(alg)
    keys: Any = ring if alg == "HS256" else ring.public_jwks()
    v = Verifier(
        keys, issuer=ISS, audience=AUD, clock=FrozenClock(now), leeway=leeway, cache_size=0
    )
    try:
        return v.verify(token).raw
    except InvalidToken:
        return None


# --------------------------------------------------------------------------- strategies
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([2**64, -(2**63) - 1, 10**308, 10**309, -(10**309), 2**1100]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_edges = st.sampled_from([-31, -30, -29, -1, 0, 1, 29, 30, 31])
offsets = _edges | st.integers(-60, 60)  # verification time, relative to NOW


def _times(spread: st.SearchStrategy[int]) -> st.SearchStrategy[float]:
    both = _edges | spread
    return st.builds(lambda o: NOW + o, both) | st.builds(lambda o: NOW + o + 0.5, both)


exp_times = _times(st.integers(-100, 2000))  # mostly in the future
past_times = _times(st.integers(-2000, 100))  # iat / nbf: mostly in the past


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    """About half the draws are well-formed claims (times still around every boundary);
    the others carry one or two wrong issuers, audiences, types or missing claims."""
    c: dict[str, Any] = {
        "iss": ISS,
        "sub": draw(st.sampled_from(["alice", "bob"]) | st.text(min_size=1, max_size=8)),
        "aud": draw(st.sampled_from([AUD, [AUD], ["x", AUD]])),
        "exp": draw(exp_times),
        "iat": draw(past_times),
        "jti": draw(st.sampled_from(["j1", "j2"])),
        "client_id": "web",
    }
    if draw(st.booleans()):
        c["nbf"] = draw(past_times)
    for name in ("scope", "sid"):
        if draw(st.booleans()):
            c[name] = draw(st.sampled_from(["read", "s1", None]))
    extra = json_values | st.just({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    c.update(draw(st.dictionaries(st.sampled_from(["x", "cnf", "roles"]), extra, max_size=2)))
    if draw(st.booleans()):
        return c
    bad_values = {
        "iss": [ISS + "/", "evil", [ISS], ["evil", ISS], ISS[:-1]],
        "aud": ["x", [], [AUD, 1], AUD.upper(), [["api"]]],
        "sub": ["", 1, ["alice"]],
        "jti": ["", 2],
        "client_id": ["", 7],
        "scope": [["read"], 1],
        "sid": [{"s": 1}],
        "exp": ["1800000000", True, [NOW]],
    }
    for name in draw(st.lists(st.sampled_from(sorted(bad_values)), min_size=1, max_size=2)):
        how = draw(st.sampled_from(["value", "value", "delete", "random"]))
        if how == "delete":
            c.pop(name, None)  # a required claim missing (scope/sid: simply absent)
        elif how == "value":
            c[name] = draw(st.sampled_from(bad_values[name]))
        else:
            c[name] = draw(json_values)
    return c


HEADER_EDITS = st.just({}) | st.sampled_from(
    [
        {},
        {"typ": "JWT"},
        {"typ": "AT+JWT"},
        {"typ": "application/at+jwt"},
        {"typ": None},
        {"kid": "other"},
        {"kid": None},
        {"alg": "HS256"},
        {"alg": "none"},
        {"alg": "RS256"},
        {"alg": "Ed25519"},
        {"crit": ["exp"], "exp": 1},
        {"jku": "http://127.0.0.1:1/jwks"},
        {"cty": "x"},
        {"x5t": "AAAA"},
    ]
)


@st.composite
def tokens(draw: st.DrawFn, alg: str) -> str:
    claims = draw(claim_sets())
    header = {"alg": alg, "kid": _ring(alg).active.kid, "typ": "at+jwt"}
    for k, v in draw(HEADER_EDITS).items():
        if v is None:
            header.pop(k, None)
        else:
            header[k] = v
    payload = json.dumps(claims, separators=(",", ":")).encode()
    token = sign(alg, json.dumps(header, separators=(",", ":")).encode(), payload)
    mutation = draw(st.sampled_from(["none", "none", "none", "bitflip", "char"]))
    parts = token.split(".")
    i = draw(st.integers(0, 2))
    if mutation == "bitflip":
        raw = bytearray(b64d(parts[i]))
        if raw:
            pos = draw(st.integers(0, len(raw) * 8 - 1))
            raw[pos // 8] ^= 1 << (pos % 8)
        parts[i] = b64e(bytes(raw))
    elif mutation == "char" and parts[i]:
        pos = draw(st.integers(0, len(parts[i]) - 1))
        ch = draw(st.sampled_from("Aa0-_+/=. \n"))
        parts[i] = parts[i][:pos] + ch + parts[i][pos + 1 :]
    return ".".join(parts)


def _check(alg: str, token: str, offset: int, leeway: int) -> None:
    now = NOW + offset
    expected = oracle(alg, token, now, leeway)
    got = ours(alg, token, now, leeway)
    event("accepted" if got is not None else "rejected")
    assert (got is None) == (expected is None), (token, expected, got)
    assert got == expected


SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@SETTINGS
@given(token=tokens("ES256"), offset=offsets, leeway=st.sampled_from([0, 30]))
def test_differential_es256(token: str, offset: int, leeway: int) -> None:
    _check("ES256", token, offset, leeway)


@SETTINGS
@given(token=tokens("HS256"), offset=offsets, leeway=st.sampled_from([0, 30]))
def test_differential_hs256(token: str, offset: int, leeway: int) -> None:
    _check("HS256", token, offset, leeway)


@SETTINGS
@given(token=tokens("EdDSA"), offset=offsets, leeway=st.sampled_from([0, 30]))
def test_differential_eddsa(token: str, offset: int, leeway: int) -> None:
    _check("EdDSA", token, offset, leeway)


def test_the_oracle_accepts_and_rejects() -> None:
    """The comparison is not vacuous: the oracle accepts a good token and rejects a bad one."""
    claims = {
        "iss": ISS,
        "sub": "a",
        "aud": AUD,
        "exp": NOW + 60,
        "iat": NOW,
        "jti": "j",
        "client_id": "c",
    }
    header = {"alg": "ES256", "kid": _ring("ES256").active.kid, "typ": "at+jwt"}
    good = sign("ES256", json.dumps(header).encode(), json.dumps(claims).encode())
    assert oracle("ES256", good, NOW, 0) == claims == ours("ES256", good, NOW, 0)
    assert oracle("ES256", good, NOW + 60, 0) is None is ours("ES256", good, NOW + 60, 0)

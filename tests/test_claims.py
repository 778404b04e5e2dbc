"""Claim validation (RFC 7519 §4.1, RFC 9068 §2.2, RFC 8725 §3.8–3.9), with a frozen clock.

Boundaries (RFC 7519 §4.1.4/§4.1.5): with leeway 0, ``exp == now`` is rejected and
``exp == now + 1`` accepted; ``nbf == now`` accepted and ``nbf == now + 1`` rejected. The
default leeway (30 s) shifts each boundary by exactly 30 s. Tested on ``validate_claims``
and end to end through :class:`tokenward.Verifier`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tokenward import FrozenClock, Issuer, KeyRing, Verifier
from tokenward.claims import AccessTokenClaims, format_time, validate_claims
from tokenward.errors import ExpiredToken, ImmatureToken, InvalidClaims, InvalidToken
from tokenward.verifier import DEFAULT_LEEWAY

NOW = 1_800_000_000
ISS = "https://ours.example"
AUD = "api"


def payload(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "iss": ISS,
        "sub": "alice",
        "aud": AUD,
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "j1",
        "client_id": "web",
    }
    p.update(over)
    return {k: v for k, v in p.items() if v is not _DROP}


_DROP = object()


def check(p: dict[str, Any], *, leeway: float = 0.0, now: float = NOW) -> AccessTokenClaims:
    return validate_claims(p, issuer=ISS, audience=AUD, now=now, leeway=leeway)


def test_default_leeway_is_30_seconds() -> None:
    assert DEFAULT_LEEWAY == 30.0


# --------------------------------------------------------------------------- exp
def test_exp_equal_to_now_is_rejected_with_leeway_0() -> None:
    with pytest.raises(ExpiredToken, match="expired at 2027-01-15T08:00:00Z"):
        check(payload(exp=NOW))


def test_exp_one_second_ahead_is_accepted_with_leeway_0() -> None:
    assert check(payload(exp=NOW + 1)).exp == NOW + 1


@pytest.mark.parametrize("leeway", [DEFAULT_LEEWAY, 5.0, 0.5])
def test_exp_boundary_moves_by_the_leeway(leeway: float) -> None:
    assert check(payload(exp=NOW - leeway + 1), leeway=leeway)
    assert check(payload(exp=NOW - leeway + 0.001), leeway=leeway)
    with pytest.raises(ExpiredToken):
        check(payload(exp=NOW - leeway), leeway=leeway)
    with pytest.raises(ExpiredToken):
        check(payload(exp=NOW - leeway - 1), leeway=leeway)


def test_fractional_exp() -> None:
    assert check(payload(exp=NOW + 0.5)).exp == NOW + 0.5
    with pytest.raises(ExpiredToken):
        check(payload(exp=NOW - 0.5))


# --------------------------------------------------------------------------- nbf
def test_nbf_equal_to_now_is_accepted_with_leeway_0() -> None:
    assert check(payload(nbf=NOW)).nbf == NOW


def test_nbf_one_second_ahead_is_rejected_with_leeway_0() -> None:
    with pytest.raises(ImmatureToken, match="not valid before"):
        check(payload(nbf=NOW + 1))


def test_nbf_boundary_with_default_leeway() -> None:
    assert check(payload(nbf=NOW + 30), leeway=DEFAULT_LEEWAY).nbf == NOW + 30
    with pytest.raises(ImmatureToken):
        check(payload(nbf=NOW + 31), leeway=DEFAULT_LEEWAY)


def test_nbf_absent_is_none() -> None:
    assert check(payload()).nbf is None


# --------------------------------------------------------------------------- iat
def test_iat_in_the_future() -> None:
    assert check(payload(iat=NOW)).iat == NOW
    with pytest.raises(ImmatureToken, match="issued in the future"):
        check(payload(iat=NOW + 1))
    assert check(payload(iat=NOW + 30), leeway=DEFAULT_LEEWAY)
    with pytest.raises(ImmatureToken):
        check(payload(iat=NOW + 31), leeway=DEFAULT_LEEWAY)


def test_iat_long_ago_is_fine_while_exp_holds() -> None:
    assert check(payload(iat=0)).iat == 0


# --------------------------------------------------------------------------- NumericDate types
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [
        "1800000600",
        True,
        False,
        None,
        [NOW + 600],
        {"t": NOW + 600},
        math.nan,
        math.inf,
        -math.inf,
        10**400,  # float() would raise OverflowError
        -(10**400),
        2**63 + 1,
    ],
    ids=repr,
)
def test_numeric_dates_must_be_finite_numbers(claim: str, value: Any) -> None:
    with pytest.raises(InvalidClaims, match="NumericDate"):
        check(payload(**{claim: value}))


def test_numeric_date_error_is_not_a_crash_for_huge_ints() -> None:
    """An integer too large for a float is an InvalidClaims, not an OverflowError."""
    with pytest.raises(InvalidToken):
        check(payload(exp=10**400))


# --------------------------------------------------------------------------- iss
@pytest.mark.parametrize(
    "iss",
    [
        ["evil", ISS],  # fast-jwt CVE-2025-30144 / joserfc CVE-2026-75509
        [ISS],
        ISS[:-1],  # a prefix (PyJWT CVE-2024-53861)
        ISS[:5],
        ISS + "/",
        ISS.upper(),
        " " + ISS,
        "",
        None,
        {"iss": ISS},
    ],
    ids=repr,
)
def test_iss_is_compared_as_one_exact_string(iss: Any) -> None:
    with pytest.raises(InvalidClaims, match="iss"):
        check(payload(iss=iss))


def test_iss_exact_match_is_accepted() -> None:
    assert check(payload(iss=ISS)).iss == ISS


# --------------------------------------------------------------------------- aud
@pytest.mark.parametrize(
    ("aud", "expected"),
    [(AUD, (AUD,)), ([AUD], (AUD,)), (["other", AUD], ("other", AUD)), ([AUD, AUD], (AUD, AUD))],
)
def test_aud_forms_accepted(aud: Any, expected: tuple[str, ...]) -> None:
    assert check(payload(aud=aud)).aud == expected


@pytest.mark.parametrize(
    "aud",
    ["other", ["other"], [], "", AUD + "x", AUD[:-1], AUD.upper(), [AUD, 1], [[AUD]], None, 1],
    ids=repr,
)
def test_aud_forms_rejected(aud: Any) -> None:
    with pytest.raises(InvalidClaims, match="aud"):
        check(payload(aud=aud))


# --------------------------------------------------------------------------- required / typed
@pytest.mark.parametrize("name", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
def test_rfc9068_required_claims(name: str) -> None:
    with pytest.raises(InvalidClaims, match=f"required claim '{name}'"):
        check(payload(**{name: _DROP}))


@pytest.mark.parametrize("name", ["sub", "jti", "client_id"])
@pytest.mark.parametrize("value", ["", 1, None, ["alice"]], ids=repr)
def test_string_claims_are_non_empty_strings(name: str, value: Any) -> None:
    with pytest.raises(InvalidClaims, match=name):
        check(payload(**{name: value}))


@pytest.mark.parametrize("name", ["scope", "sid"])
def test_optional_string_claims_are_typed(name: str) -> None:
    assert getattr(check(payload(**{name: "x"})), name) == "x"
    assert getattr(check(payload()), name) is None
    with pytest.raises(InvalidClaims, match=name):
        check(payload(**{name: ["x"]}))


def test_scopes_helpers_and_raw() -> None:
    c = check(payload(scope="read  write", extra={"a": 1}))
    assert c.scopes == frozenset({"read", "write"})
    assert c.has_scopes("read") and not c.has_scopes("admin")
    assert c.raw["extra"] == {"a": 1}


def test_error_messages_carry_no_claim_values() -> None:
    with pytest.raises(InvalidClaims) as info:
        check(payload(iss="secret-looking-issuer-value"))
    assert "secret-looking" not in str(info.value)


def test_format_time() -> None:
    assert format_time(NOW) == "2027-01-15T08:00:00Z"
    assert format_time(1e300) == repr(1e300)


# --------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("leeway", [0.0, DEFAULT_LEEWAY])
def test_boundaries_end_to_end_through_the_verifier(leeway: float, clock: FrozenClock) -> None:
    ring = KeyRing.generate("ES256", clock=clock)
    issuer = Issuer(ring, issuer=ISS, audience=AUD, clock=clock, access_token_ttl=60)
    token = issuer.issue_access_token(sub="alice", client_id="web")
    start = clock.now()
    clock.set(start + 60 + leeway - 1)  # one second before the boundary: accepted
    v = Verifier(ring.public_jwks(), issuer=ISS, audience=AUD, clock=clock, leeway=leeway)
    assert v.verify(token).sub == "alice"
    clock.set(start + 60 + leeway)  # exactly exp + leeway: rejected, also from the cache
    with pytest.raises(ExpiredToken):
        v.verify(token)
    fresh = Verifier(ring.public_jwks(), issuer=ISS, audience=AUD, clock=clock, leeway=leeway)
    with pytest.raises(ExpiredToken):
        fresh.verify(token)
    # a token from another issuer, or for another audience, never verifies
    for other in (
        Issuer(ring, issuer=ISS + "/", audience=AUD, clock=clock),
        Issuer(ring, issuer=ISS, audience="other", clock=clock),
    ):
        with pytest.raises(InvalidClaims):
            fresh.verify(other.issue_access_token(sub="alice", client_id="web"))

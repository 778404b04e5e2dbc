"""The receiver's check of a Security Event Token (RFC 8417, SSF 1.0) and the subjects tokenward
matches its tokens on (RFC 9493)."""

from __future__ import annotations

from typing import Any

import pytest

from tokenward.jws import JWSSigner
from tokenward.keys import KeyRing
from tokenward.secevent import (
    SESSION_REVOKED,
    SET_TYPE,
    InvalidSET,
    Subject,
    set_verifier,
    subject_of,
    verify_set,
)

TX = "https://tx.example"
RX = "https://rx.example"


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing.generate("ES256")


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": TX,
        "jti": "j1",
        "iat": 1_800_000_000,
        "aud": RX,
        "sub_id": {"format": "iss_sub", "iss": TX, "sub": "alice"},
        "events": {SESSION_REVOKED: {"event_timestamp": 1_800_000_000}},
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(ring: KeyRing, c: dict[str, Any], typ: str = SET_TYPE) -> str:
    return JWSSigner(ring.active, typ=typ).sign(c)


def test_rfc8417_a_set_needs_no_exp_and_verifies_by_jwks_keys_or_verifier(ring: KeyRing) -> None:
    token = sign(ring, claims())
    for keys in (ring.public_jwks(), list(ring), set_verifier(ring.public_jwks())):
        assert verify_set(keys, token, issuer=TX, audience=RX)["jti"] == "j1"
    long_form = sign(ring, claims(aud=["other", RX]), typ="application/secevent+jwt")
    assert verify_set(ring.public_jwks(), long_form, issuer=TX, audience=RX)["aud"] == ["other", RX]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"iss": "https://evil.example"}, "invalid_issuer"),
        ({"aud": "https://other.example"}, "invalid_audience"),
        ({"aud": ["a", 7]}, "invalid_request"),
        ({"jti": ""}, "invalid_request"),
        ({"iat": "yesterday"}, "invalid_request"),
        ({"iat": True}, "invalid_request"),
        ({"events": {}}, "invalid_request"),
        ({"events": {SESSION_REVOKED: {}, "urn:other": {}}}, "invalid_request"),
        ({"events": {SESSION_REVOKED: "revoked"}}, "invalid_request"),
        ({"sub_id": "alice"}, "invalid_request"),
    ],
)
def test_rfc8935_2_3_each_refusal_carries_its_set_error_code(
    ring: KeyRing, bad: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidSET) as ei:
        verify_set(ring.public_jwks(), sign(ring, claims(**bad)), issuer=TX, audience=RX)
    assert ei.value.set_error == code and ei.value.error == "invalid_token"


def test_rfc8417_2_3_only_secevent_jwt_is_a_set_and_only_the_transmitters_keys_sign_it(
    ring: KeyRing,
) -> None:
    with pytest.raises(InvalidSET) as ei:
        verify_set(ring.public_jwks(), sign(ring, claims(), typ="at+jwt"), issuer=TX, audience=RX)
    assert ei.value.set_error == "invalid_request"
    with pytest.raises(InvalidSET) as ei:
        verify_set(KeyRing.generate().public_jwks(), sign(ring, claims()), issuer=TX, audience=RX)
    assert ei.value.set_error == "invalid_key"


def test_rfc9493_subjects_tokenward_can_match() -> None:
    user = {"format": "iss_sub", "iss": TX, "sub": "alice"}
    session = {"format": "opaque", "id": "sid-1"}
    assert subject_of({"sub_id": user}) == Subject(user=(TX, "alice"))
    assert subject_of({"sub_id": {"format": "complex", "session": session}}) == Subject(sid="sid-1")
    both = {"format": "complex", "session": session, "user": user}
    assert subject_of({"sub_id": both}) == Subject(sid="sid-1", user=(TX, "alice"))
    assert subject_of({"sub_id": {"format": "email", "email": "a@example.com"}}) == Subject()
    assert subject_of({"sub_id": {"format": "iss_sub", "iss": TX}}) == Subject()
    assert subject_of({}) == Subject()

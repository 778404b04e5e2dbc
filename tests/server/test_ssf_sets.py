"""Security Event Tokens: payloads for each announced event, signed and verifiable through the
public JWKS."""

from __future__ import annotations

import pytest

from tokenward.errors import TokenwardError
from tokenward.jws import JWSSigner
from tokenward.keys import KeyRing
from tokenward.server import ssf

ISS = "https://id.example"
NOW = 1_800_000_000.0


def test_a_set_is_signed_with_the_server_key_and_verifies_through_the_public_jwks() -> None:
    ring = KeyRing.generate()
    claims = ssf.set_for_event(
        "revoked", {"kind": "sid", "value": "sid-1", "reason": "logout"},
        issuer=ISS, audience="https://rp.example", now=NOW,
    )  # fmt: skip
    assert claims is not None
    token = ssf.sign_set(ring, claims)
    got = ssf.verify_set(ring.public_jwks(), token)
    assert got == claims
    assert got["events"][ssf.SESSION_REVOKED]["reason_admin"] == {"en": "logout"}
    assert got["sub_id"] == {"format": "complex", "session": {"format": "opaque", "id": "sid-1"}}
    assert "exp" not in got and "sub" not in got  # RFC 8417 §2.2, SSF: the subject is sub_id


def test_a_set_is_not_accepted_as_another_token_type_or_from_another_key() -> None:
    ring = KeyRing.generate()
    claims = ssf.build_set(ssf.SESSIONS_REVOKED, issuer=ISS, audience="a", now=NOW, sub="alice")
    token = ssf.sign_set(ring, claims)
    with pytest.raises(TokenwardError):
        ssf.verify_set(KeyRing.generate().public_jwks(), token)
    with pytest.raises(TokenwardError):  # the same claims signed as an access token (at+jwt)
        ssf.verify_set(ring.public_jwks(), JWSSigner(ring.active).sign(claims))


def test_each_set_has_a_fresh_jti_for_receiver_dedup() -> None:
    a = ssf.build_set(ssf.SESSIONS_REVOKED, issuer=ISS, audience="a", now=NOW, sub="alice")
    b = ssf.build_set(ssf.SESSIONS_REVOKED, issuer=ISS, audience="a", now=NOW, sub="alice")
    assert a["jti"] != b["jti"]


@pytest.mark.parametrize(
    ("name", "fields", "event_type"),
    [
        ("revoked", {"kind": "sub", "value": "alice"}, ssf.SESSIONS_REVOKED),
        ("refresh_token_reuse", {"sid": "s", "sub": "alice"}, ssf.SESSION_REVOKED),
        (
            "risk_decision",
            {"sid": "s", "sub": "alice", "actions": ["flag", "revoke_session"], "reason": "two"},
            ssf.SESSION_REVOKED,
        ),
        ("password_changed", {"sub": "alice"}, ssf.CREDENTIAL_CHANGE),
    ],
)
def test_security_events_map_to_their_caep_or_risc_event(
    name: str, fields: dict[str, object], event_type: str
) -> None:
    claims = ssf.set_for_event(name, fields, issuer=ISS, audience="a", now=NOW)
    assert claims is not None
    assert list(claims["events"]) == [event_type]


def test_a_risk_decision_that_ends_nothing_and_other_events_are_not_announced() -> None:
    flag_only = {"sid": "s", "sub": "alice", "actions": ["flag"]}
    assert ssf.set_for_event("risk_decision", flag_only, issuer=ISS, audience="a", now=NOW) is None
    assert ssf.set_for_event("refreshed", {"sid": "s"}, issuer=ISS, audience="a", now=NOW) is None


def test_a_risk_session_revoked_set_carries_the_user_and_the_reason() -> None:
    claims = ssf.set_for_event(
        "risk_decision",
        {"sid": "s", "sub": "alice", "actions": ["revoke_session"], "reason": "used from two"},
        issuer=ISS, audience="a", now=NOW,
    )  # fmt: skip
    assert claims is not None
    assert claims["sub_id"]["user"] == {"format": "iss_sub", "iss": ISS, "sub": "alice"}
    assert claims["events"][ssf.SESSION_REVOKED]["reason_admin"] == {"en": "used from two"}

"""Wycheproof JOSE-level vectors through OUR module: ``key_from_jwk`` / ``keys_from_jwks`` and
``JWSVerifier`` (``types=None``: foreign vectors carry no ``typ: at+jwt``).

Every case of ``json_web_signature_test.json`` and ``json_web_key_test.json`` is run:
``invalid`` must be rejected (key refused with ``KeyRingError`` or token refused with an
``InvalidToken`` subclass), ``valid`` must be accepted, except the tcIds listed below with
their reason. The same lists, with the same reasons, are in ``docs/security-jws.md``.

Wycheproof payloads are not JSON (``foo``, ``Test``), so acceptance is checked with
``JWSVerifier.verify_bytes`` (every rule but the payload-is-a-JSON-object one); a separate test
checks that ``verify`` reaches the same verdict as ``verify_bytes`` on every case.
"""

from __future__ import annotations

import base64
import json
import warnings
from functools import cache
from typing import Any

import pytest

from support.vectors import vectors_path
from tokenward.errors import (
    InvalidSignature,
    InvalidToken,
    KeyRingError,
    MalformedToken,
    UnknownKey,
    UnsupportedAlgorithm,
)
from tokenward.jws import JWSVerifier, parse_json_object
from tokenward.keys import key_from_jwk, keys_from_jwks

JWS_FILE, JWS_CASES = "json_web_signature_test.json", 401
JWK_FILE, JWK_CASES = "json_web_key_test.json", 26

_NOT_IN_PROFILE = "algorithm outside our profile (we accept ES256 ES384 RS256 PS256 EdDSA HS256)"

#: ``valid`` cases that our stricter profile rejects, with the reason.
JWS_STRICTER: dict[int, str] = {
    **dict.fromkeys((264, 265, 266, 267), f"RS384: {_NOT_IN_PROFILE}; key import refused"),
    **dict.fromkeys((268, 269, 270, 271), f"RS512: {_NOT_IN_PROFILE}; key import refused"),
    **dict.fromkeys((320, 321, 322, 323), f"PS384: {_NOT_IN_PROFILE}; key import refused"),
    **dict.fromkeys((325, 326, 327, 328), f"PS512: {_NOT_IN_PROFILE}; key import refused"),
    346: "token alg PS384 under a key whose JWK says alg PS256: one key, one alg (RFC 8725 §3.1)",
    350: "token alg PS384 under a key whose JWK says alg PS256: one key, one alg (RFC 8725 §3.1)",
    347: f"ES512 on P-521 (JWK alg 'ES521'): {_NOT_IN_PROFILE}; key import refused",
    351: f"ES512 on P-521 (JWK alg 'ES521'): {_NOT_IN_PROFILE}; key import refused",
    372: "'?' is not in the base64url alphabet; strict decoding (RFC 7515 §2, §5.2) refuses it",
    373: "'?' is not in the base64url alphabet; strict decoding (RFC 7515 §2, §5.2) refuses it",
}

#: ``invalid`` cases we accept because the vector file contradicts itself: the token string is
#: byte-identical to a ``valid`` case of the same group (same key). The padding these cases are
#: named after is absent from the file. The test asserts the identity, so a corrected file is
#: noticed.
JWS_FILE_DEFECTS: dict[int, tuple[int, str]] = {
    367: (357, "'invalidBase64Padding' carries no padding: identical to valid tcId 357"),
    370: (357, "'invalidBase64PaddingInPayload' carries no padding: identical to tcId 357"),
}

JWK_STRICTER: dict[int, str] = {
    14: f"HS384: {_NOT_IN_PROFILE}; key import refused",
    15: f"HS512: {_NOT_IN_PROFILE}; key import refused",
}

#: ``acceptable`` cases and our decision (none in the current files; a new one must be listed).
ACCEPTABLE: dict[tuple[str, int], bool] = {}

#: Which error a rejection must raise, by Wycheproof ``comment``, for groups whose key we
#: import (rejections of refused keys are ``KeyRingError``).
_EXPECTED_BY_COMMENT: dict[str, type[Exception]] = {
    "rejectsModifiedSignature": InvalidSignature,
    "rejectsModifiedPayload": InvalidSignature,
    "rejectsMissingSignature": InvalidSignature,
    "rejectsMissingPayload": InvalidSignature,
    "rejectsModifiedHeader": UnknownKey,
    "rejectsNoneAlgorithmAndMissingSignature": UnsupportedAlgorithm,
    "rejectsSymmetryConfusionAttacks_aesKeyFromEcVerificationKeyBytes": UnsupportedAlgorithm,
    "rejectsAttackerProvidedEmbeddedJwk": MalformedToken,
    "rejectsValidJsonSerialization": MalformedToken,
    "rejectsEmptyString": MalformedToken,
    "rejectsExtraComponent": MalformedToken,
    "rejectsExtraEmptyComponent": MalformedToken,
    "ModifiedUnusedBitsInPayload": MalformedToken,
}
_EXPECTED_BY_FLAG: dict[str, type[Exception]] = {
    "ModifiedPadding": InvalidSignature,
    "ModifiedSignature": InvalidSignature,
}


@cache
def _load(name: str) -> dict[str, Any]:
    with open(vectors_path("wycheproof", name), "rb") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _cases(name: str) -> list[tuple[int, int]]:
    """(group index, test index) for every case, so parametrisation is stable and cheap."""
    doc = _load(name)
    return [(gi, ti) for gi, g in enumerate(doc["testGroups"]) for ti in range(len(g["tests"]))]


def _case_id(name: str) -> Any:
    def ident(c: tuple[int, int]) -> str:
        t = _load(name)["testGroups"][c[0]]["tests"][c[1]]
        return f"tc{t['tcId']}-{t['comment']}"

    return ident


def _verdict(verifier_factory: Any, token: Any) -> tuple[bytes | None, Exception | None]:
    """(payload, None) when accepted, (None, error) when rejected. Anything else escapes."""
    try:
        v: JWSVerifier = verifier_factory()
    except KeyRingError as exc:
        return None, exc
    try:
        return v.verify_bytes(token), None
    except InvalidToken as exc:
        return None, exc


def _jws_verifier(gi: int) -> JWSVerifier:
    group = _load(JWS_FILE)["testGroups"][gi]
    jwk = group.get("public") or group["private"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about the small keys we then refuse
        return JWSVerifier([key_from_jwk(jwk)], types=None)


def _jwk_verifier(gi: int) -> JWSVerifier:
    group = _load(JWK_FILE)["testGroups"][gi]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return JWSVerifier(keys_from_jwks(group.get("public") or group["private"]), types=None)


def _b64(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


# --------------------------------------------------------------------------- pinning
@pytest.mark.parametrize(("name", "count"), [(JWS_FILE, JWS_CASES), (JWK_FILE, JWK_CASES)])
def test_case_count_is_pinned(name: str, count: int) -> None:
    doc = _load(name)
    tc_ids = [t["tcId"] for g in doc["testGroups"] for t in g["tests"]]
    assert doc["numberOfTests"] == count
    assert len(tc_ids) == len(set(tc_ids)) == count
    listed = set(JWS_STRICTER) | set(JWS_FILE_DEFECTS) if name == JWS_FILE else set(JWK_STRICTER)
    assert listed <= set(tc_ids)


# --------------------------------------------------------------------------- JWS file
@pytest.mark.parametrize("case", _cases(JWS_FILE), ids=_case_id(JWS_FILE))
def test_wycheproof_jws(case: tuple[int, int]) -> None:
    gi, ti = case
    group = _load(JWS_FILE)["testGroups"][gi]
    tc = group["tests"][ti]
    tc_id, result, token = tc["tcId"], tc["result"], tc["jws"]
    payload, err = _verdict(lambda: _jws_verifier(gi), token)

    if tc_id in JWS_FILE_DEFECTS:
        twin, _why = JWS_FILE_DEFECTS[tc_id]
        twin_tc = next(t for t in group["tests"] if t["tcId"] == twin)
        assert twin_tc["result"] == "valid" and twin_tc["jws"] == token, "vector file changed"
        assert err is None
        return
    if result == "acceptable":
        decision = ACCEPTABLE.get((JWS_FILE, tc_id))
        assert decision is not None, f"tcId {tc_id} is 'acceptable': decide and document it"
        assert (err is None) is decision
        return
    if result == "valid" and tc_id not in JWS_STRICTER:
        assert err is None, f"valid tcId {tc_id} rejected: {err!r}"
        assert payload == _b64(token.split(".")[1])
        return
    assert err is not None, f"tcId {tc_id} ({result}) accepted"
    if tc_id in JWS_STRICTER:
        return
    if isinstance(err, KeyRingError):
        return
    expected = _EXPECTED_BY_COMMENT.get(tc["comment"])
    for flag in tc["flags"]:
        expected = expected or _EXPECTED_BY_FLAG.get(flag)
    if expected is not None:
        assert isinstance(err, expected), f"tcId {tc_id}: {err!r}, expected {expected.__name__}"


def test_stricter_list_is_exact() -> None:
    """Each listed tcId really is a `valid` case we reject; no stale entries."""
    for gi, g in enumerate(_load(JWS_FILE)["testGroups"]):
        for tc in g["tests"]:
            if tc["tcId"] in JWS_STRICTER:
                assert tc["result"] in ("valid", "acceptable")
                assert _verdict(lambda gi=gi: _jws_verifier(gi), tc["jws"])[1] is not None


@pytest.mark.parametrize("case", _cases(JWS_FILE), ids=_case_id(JWS_FILE))
def test_verify_agrees_with_verify_bytes(case: tuple[int, int]) -> None:
    """``verify`` (the hot path) and ``verify_bytes`` (used above) give the same verdict."""
    gi, ti = case
    token = _load(JWS_FILE)["testGroups"][gi]["tests"][ti]["jws"]
    try:
        a = _jws_verifier(gi)
        b = _jws_verifier(gi)
    except KeyRingError:
        return
    try:
        raw = a.verify_bytes(token)
    except InvalidToken as exc:
        with pytest.raises(type(exc)):
            b.verify(token)
        return
    try:
        expected: dict[str, Any] | type[Exception] = parse_json_object(raw, "payload")
    except MalformedToken:
        expected = MalformedToken
    if isinstance(expected, dict):
        assert b.verify(token) == expected
    else:
        with pytest.raises(MalformedToken, match="payload"):
            b.verify(token)


# --------------------------------------------------------------------------- JWK file
@pytest.mark.parametrize("case", _cases(JWK_FILE), ids=_case_id(JWK_FILE))
def test_wycheproof_jwk(case: tuple[int, int]) -> None:
    gi, ti = case
    tc = _load(JWK_FILE)["testGroups"][gi]["tests"][ti]
    tc_id, result = tc["tcId"], tc["result"]
    payload, err = _verdict(lambda: _jwk_verifier(gi), tc["jws"])
    if result == "acceptable":
        decision = ACCEPTABLE.get((JWK_FILE, tc_id))
        assert decision is not None, f"tcId {tc_id} is 'acceptable': decide and document it"
        assert (err is None) is decision
    elif result == "valid" and tc_id not in JWK_STRICTER:
        assert err is None, f"valid tcId {tc_id} rejected: {err!r}"
        assert payload == b"foo"
    else:
        assert err is not None, f"tcId {tc_id} ({result}) accepted"


def test_jwk_rejections_have_the_named_reason() -> None:
    """Not just rejected: rejected for the reason each Wycheproof JWK case is about."""
    doc = _load(JWK_FILE)
    reasons = {
        1: "mixes private",
        7: "ROCA",
        8: "1024 bits",
        10: "at least 32 bytes",
        19: "unsupported algorithm 'ES521'",
        20: "unsupported algorithm 'ES224'",
        21: "use='enc'",
        25: "unsupported algorithm 'A256GCM'",
        26: "unsupported algorithm 'A256KW'",
    }
    for gi, g in enumerate(doc["testGroups"]):
        for tc in g["tests"]:
            if tc["tcId"] in reasons:
                with pytest.raises(KeyRingError, match=reasons[tc["tcId"]]):
                    _jwk_verifier(gi)
    # tcId 3: a well-formed key set; the modified MAC is what fails
    g3 = next(g for g in doc["testGroups"] if any(t["tcId"] == 3 for t in g["tests"]))
    with pytest.raises(InvalidSignature):
        JWSVerifier(keys_from_jwks(g3["private"]), types=None).verify_bytes(g3["tests"][1]["jws"])

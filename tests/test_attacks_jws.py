"""The JWS-verifier attacks A1–A16 (``docs/security.md``), each a named test through the full
:class:`tokenward.Verifier`, each rejected with the right error class, the hostile sizes with
bounded *work*: counted, not timed (what is decoded, parsed and signature-checked, by
``WorkMeter``); the times are measured in ``bench/attacks.py --only corpus``.

A1 alg=none · A2 HS/asymmetric key confusion · A3 JWE refused · A5 psychic signatures ·
A6 kid injection · A7 jku/x5u/jwk/x5c never followed · A10 crit · A11 duplicate members ·
A12 NumericDate edge cases · A13 malformed / stripped · A14 constant-time HMAC compare ·
A15 size DoS · A16 curve / alg mismatch.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, OKPKey

from support.jose import P256_N, P384_N, b64, public_serialisations, rs_signature, seg
from tokenward import FrozenClock, KeyRing, Verifier
from tokenward.errors import (
    ExpiredToken,
    ImmatureToken,
    InvalidClaims,
    InvalidSignature,
    InvalidToken,
    KeyRingError,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from tokenward.jws import _make_sign_function, b64url_decode, make_verify_function
from tokenward.keys import SigningKey, key_from_jwk

ISS = "https://issuer.example"
AUD = "api"


@dataclass
class Env:
    alg: str
    ring: KeyRing
    key: SigningKey
    verifier: Verifier
    clock: FrozenClock

    @property
    def kid(self) -> str:
        return self.key.kid

    def claims(self, **over: Any) -> dict[str, Any]:
        now = int(self.clock.now())
        c: dict[str, Any] = {
            "iss": ISS,
            "sub": "alice",
            "aud": AUD,
            "exp": now + 600,
            "iat": now,
            "jti": "j1",
            "client_id": "web",
        }
        c.update(over)
        return c

    def header(self, **over: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}
        h.update(over)
        return {k: v for k, v in h.items() if v is not _DROP}

    def sign_raw(self, h: str, p: str, fn: Callable[[bytes], bytes] | None = None) -> str:
        """Sign the exact segments with our real private key (or ``fn``)."""
        fn = fn or _make_sign_function(self.alg, self.key.private_key)
        return f"{h}.{p}.{b64(fn(f'{h}.{p}'.encode('ascii')))}"

    def token(self, header: Any = None, payload: Any = None) -> str:
        return self.sign_raw(
            seg(self.header() if header is None else header),
            seg(self.claims() if payload is None else payload),
        )


_DROP = object()


def make_env(alg: str, clock: FrozenClock, **verifier_opts: Any) -> Env:
    ring = KeyRing.generate(alg, clock=clock, with_next=False)
    jwks: Any = ring if alg == "HS256" else ring.public_jwks()
    v = Verifier(jwks, issuer=ISS, audience=AUD, clock=clock, cache_size=0, **verifier_opts)
    return Env(alg, ring, ring.active, v, clock)


class WorkMeter:
    """Counts the work one :class:`Verifier` does: characters base64url-decoded (per call),
    JSON documents parsed (and how many fell back to the standard library's recursive parser)
    and signatures checked. Installed on the verifier's keys and on ``tokenward.jws``;
    undone at the end of the test (``_undo_meters``)."""

    made: ClassVar[list[WorkMeter]] = []

    def __init__(self, verifier: Verifier) -> None:
        import tokenward.jws as jws_module

        WorkMeter.made.append(self)
        self.decoded: list[int] = []
        self.parses = 0
        self.fallback_parses = 0
        self.signature_checks = 0
        self._patch = pytest.MonkeyPatch()
        decode, parse, fallback = (
            jws_module.b64url_decode,
            jws_module.parse_json_object,
            jws_module.json.loads,
        )

        def counted_decode(segment: str) -> bytes:
            self.decoded.append(len(segment))
            return decode(segment)

        def counted_parse(raw: bytes, what: str) -> dict[str, Any]:
            self.parses += 1
            return parse(raw, what)

        def counted_fallback(*args: Any, **kwargs: Any) -> Any:
            self.fallback_parses += 1
            return fallback(*args, **kwargs)

        self._patch.setattr(jws_module, "b64url_decode", counted_decode)
        self._patch.setattr(jws_module, "parse_json_object", counted_parse)
        self._patch.setattr(jws_module.json, "loads", counted_fallback)
        for key in verifier._jws._keys.values():
            self._patch.setattr(key, "verify", self._counted_verify(key.verify))
        verifier._jws._header_cache.clear()  # every header is looked at again

    def _counted_verify(self, verify: Callable[[bytes, bytes], bool]) -> Any:
        def counted(msg: bytes, sig: bytes) -> bool:
            self.signature_checks += 1
            return verify(msg, sig)

        return counted

    @property
    def nothing(self) -> bool:
        """Refused before any decoding, parsing or signature check."""
        return not self.decoded and not self.parses and not self.signature_checks

    def within(self, token: str, *, signature_checks: int) -> bool:
        """Linear work: no character decoded twice, at most one parse per segment (header and
        payload), exactly ``signature_checks`` signatures checked (never a key trial loop)."""
        return (
            sum(self.decoded) <= len(token)
            and len(self.decoded) <= 3
            and self.parses <= 2
            and self.signature_checks == signature_checks
        )


@pytest.fixture(autouse=True)
def _undo_meters() -> Iterator[None]:
    yield
    for meter in WorkMeter.made:
        meter._patch.undo()
    WorkMeter.made.clear()


@pytest.fixture(params=["ES256", "RS256", "EdDSA", "HS256"])
def env(request: pytest.FixtureRequest, clock: FrozenClock) -> Env:
    return make_env(request.param, clock)


@pytest.fixture
def es256(clock: FrozenClock) -> Env:
    return make_env("ES256", clock)


def test_harness_signs_tokens_the_verifier_accepts(env: Env) -> None:
    """Every forged token below differs from this one in the attacked detail only."""
    assert env.verifier.verify(env.token()).sub == "alice"


# --------------------------------------------------------------------------- A1
@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "nOnE", "", _DROP, ["HS256"], None, 0, {"alg": "HS256"}]
)
def test_a1_alg_none_variants(env: Env, alg: Any) -> None:
    h = seg(env.header(alg=alg))
    p = seg(env.claims())
    for sig in ("", b64(b"\x00" * 32), b64(hmac.digest(b"", f"{h}.{p}".encode(), "sha256"))):
        with pytest.raises(UnsupportedAlgorithm):
            env.verifier.verify(f"{h}.{p}.{sig}")


def test_a1_alg_none_with_our_valid_signature_still_rejected(env: Env) -> None:
    h, p = seg(env.header(alg="none")), seg(env.claims())
    with pytest.raises(UnsupportedAlgorithm):
        env.verifier.verify(env.sign_raw(h, p))


def test_a1_wycheproof_tc16_token(env: Env) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        env.verifier.verify("eyJhbGciOiJub25lIiwia2lkIjoia2lkLWFlcy1zaWduIn0.Zm9v.")


# --------------------------------------------------------------------------- A2
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a2_hs256_with_every_public_serialisation_as_secret(alg: str, clock: FrozenClock) -> None:
    e = make_env(alg, clock)
    h, p = seg(e.header(alg="HS256")), seg(e.claims())
    forms = public_serialisations(e.key)
    assert len(forms) >= 10
    for name, secret in forms.items():
        token = f"{h}.{p}.{b64(hmac.digest(secret, f'{h}.{p}'.encode(), 'sha256'))}"
        # the forgery is well made: an HS256 verify function keyed with this serialisation
        # (what a confused library builds) accepts it ...
        if len(secret) >= 32:
            confused = make_verify_function("HS256", secret)
            assert confused(f"{h}.{p}".encode(), b64url_decode(token.split(".")[2])), name
        # ... ours refuses it, before any HMAC is computed
        with pytest.raises(UnsupportedAlgorithm, match="does not match"):
            e.verifier.verify(token)


def test_a2_wycheproof_tc31_shape_hs256_header_on_ec_kid(es256: Env) -> None:
    h = seg({"alg": "HS256", "kid": es256.kid, "typ": "at+jwt"})
    p = seg(es256.claims())
    secret = es256.key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:33]
    with pytest.raises(UnsupportedAlgorithm):
        es256.verifier.verify(f"{h}.{p}.{b64(hmac.digest(secret, f'{h}.{p}'.encode(), 'sha256'))}")


# --------------------------------------------------------------------------- A3
def test_a3_five_segment_jwe_refused_outright(es256: Env) -> None:
    jwe_like = seg({"alg": "RSA-OAEP-256", "enc": "A256GCM", "zip": "DEF", "kid": es256.kid})
    with pytest.raises(MalformedToken, match="JWE"):
        es256.verifier.verify(f"{jwe_like}.AAAA.AAAA.AAAA.AAAA")


# --------------------------------------------------------------------------- A5
@pytest.mark.parametrize(("alg", "n", "size"), [("ES256", P256_N, 32), ("ES384", P384_N, 48)])
def test_a5_psychic_signatures(alg: str, n: int, size: int, clock: FrozenClock) -> None:
    e = make_env(alg, clock)
    h, p = seg(e.header()), seg(e.claims())
    good = e.sign_raw(h, p).split(".")[2]
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
    forged = {
        "zero": bytes(2 * size),
        "r=0,s=0": rs_signature(0, 0, size),
        "r=n,s=n": rs_signature(n, n, size),
        "r=0,s=valid": rs_signature(0, s, size),
        "r=valid,s=0": rs_signature(r, 0, size),
        "r=n,s=valid": rs_signature(n, s, size),
        "r=valid,s=n": rs_signature(r, s + n, size)
        if s + n < 1 << (8 * size)
        else rs_signature(r, n, size),
        "r=valid+n": rs_signature(r + n, s, size)
        if r + n < 1 << (8 * size)
        else rs_signature(n + 1, s, size),
        "r=1,s=1": rs_signature(1, 1, size),
        "der-encoded": encode_dss_signature(r, s),
        "truncated": raw[:-1],
        "padded": raw + b"\x00",
    }
    for name, sig in forged.items():
        with pytest.raises(InvalidSignature):
            e.verifier.verify(f"{h}.{p}.{b64(sig)}")
        assert name  # (named for the failure message of pytest.raises)
    assert e.verifier.verify(f"{h}.{p}.{good}").sub == "alice"


def test_a5_zero_signature_ed25519_and_rsa(clock: FrozenClock) -> None:
    for alg, size in (("EdDSA", 64), ("RS256", 256), ("PS256", 256)):
        e = make_env(alg, clock)
        h, p = seg(e.header()), seg(e.claims())
        for sig in (bytes(size), b"\x01" + bytes(size - 1), b""):
            with pytest.raises(InvalidSignature):
                e.verifier.verify(f"{h}.{p}.{b64(sig)}")


# --------------------------------------------------------------------------- A6
KID_INJECTIONS: list[tuple[Any, bytes]] = [
    ("../../../../../../dev/null", b""),
    ("/proc/sys/kernel/randomize_va_space", b"2\n"),
    ("x' UNION SELECT 'AAAA'-- -", b"AAAA"),
    ("|id", b""),
    ("$(id)", b""),
    ({"$ne": None}, b""),
    (["*"], b""),
    ("k1\u0000.pem", b""),
    ("*", b""),
    ("", b""),
    (None, b""),
    (1, b""),
    (True, b""),
]


@pytest.mark.parametrize(("kid", "secret"), KID_INJECTIONS, ids=lambda v: repr(v)[:30])
def test_a6_kid_injection(env: Env, kid: Any, secret: bytes) -> None:
    for alg in {env.alg, "HS256"}:
        h, p = seg(env.header(alg=alg, kid=kid)), seg(env.claims())
        token = f"{h}.{p}.{b64(hmac.digest(secret, f'{h}.{p}'.encode(), 'sha256'))}"
        with pytest.raises(UnknownKey):
            env.verifier.verify(token)


def test_a6_kid_near_misses_of_our_kid(env: Env) -> None:
    for kid in (env.kid + " ", " " + env.kid, env.kid.upper(), env.kid[:-1], env.kid + "\u0000"):
        with pytest.raises(UnknownKey):
            env.verifier.verify(env.token(header=env.header(kid=kid)))
    with pytest.raises(UnknownKey):
        env.verifier.verify(env.token(header=env.header(kid=[env.kid])))


def test_a6_kid_of_100000_characters(clock: FrozenClock) -> None:
    e = make_env("HS256", clock)
    token = e.token(header=e.header(kid="A" * 100_000))
    with pytest.raises(TokenTooLarge):  # the size cap answers first ...
        e.verifier.verify(token)
    big = Verifier(e.ring, issuer=ISS, audience=AUD, clock=clock, max_token_size=1 << 20)
    meter = WorkMeter(big)
    with pytest.raises(UnknownKey):  # ... and without it, the exact-match lookup
        big.verify(token)
    # no key is tried (an exact-match lookup, never a loop over the keys), and nothing but the
    # header is decoded
    assert meter.signature_checks == 0
    assert meter.decoded == [len(token.split(".")[0])]
    assert meter.parses == 1 and meter.fallback_parses == 0


# --------------------------------------------------------------------------- A7
@pytest.fixture
def canary() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"keys":[]}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _self_signed_cert(key: ec.EllipticCurvePrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_a7_canary_listener_works(canary: tuple[str, list[str]]) -> None:
    import urllib.request

    url, hits = canary
    with urllib.request.urlopen(url + "/probe", timeout=5) as r:
        assert r.status == 200
    assert hits == ["/probe"]
    hits.clear()


def test_a7_jku_x5u_jwk_x5c_never_followed(es256: Env, canary: tuple[str, list[str]]) -> None:
    url, hits = canary
    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = ECKey.import_key(attacker.public_key()).as_dict(private=False)
    attacker_sign = _make_sign_function("ES256", attacker)
    variants: dict[str, dict[str, Any]] = {
        "jku": {"jku": url + "/jwks.json", "kid": "evil"},
        "jku-our-kid": {"jku": url + "/jwks.json"},
        "x5u": {"x5u": url + "/cert.pem", "kid": "evil"},
        "jwk": {"jwk": attacker_jwk, "kid": "evil"},
        "jwk-our-kid": {"jwk": attacker_jwk},
        "x5c": {"x5c": [_self_signed_cert(attacker)]},
        "x5t": {"x5t": b64(b"\x00" * 20)},
        "x5t#S256": {"x5t#S256": b64(b"\x00" * 32)},
    }
    p = seg(es256.claims())
    for name, extra in variants.items():
        h = seg(es256.header(**extra))
        for fn in (attacker_sign, None):  # signed by the attacker, and even by our own key
            token = es256.sign_raw(h, p, fn)
            with pytest.raises((MalformedToken, UnknownKey)) as info:
                es256.verifier.verify(token)
            if "kid" not in extra:
                assert isinstance(info.value, MalformedToken), name
    with pytest.raises(UnknownKey):  # a kid that is a URL is only ever a map key
        es256.verifier.verify(es256.token(header=es256.header(kid=url + "/key")))
    assert hits == []


# --------------------------------------------------------------------------- A10
@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["myparam"], "myparam": 1},
        {"crit": []},
        {"crit": ["alg"]},
        {"crit": "x"},
        {"crit": ["b64"], "b64": False},
        {"crit": ["absent"]},
        {"crit": ["exp"], "exp": 1},
        {"crit": None},
        {"b64": False},
    ],
    ids=lambda e: json.dumps(e),
)
def test_a10_crit_variants_with_valid_signature(env: Env, extra: dict[str, Any]) -> None:
    with pytest.raises(MalformedToken):
        env.verifier.verify(env.token(header=env.header(**extra)))


# --------------------------------------------------------------------------- A11
def test_a11_duplicate_members_in_header(env: Env) -> None:
    base = f'"kid":"{env.kid}","typ":"at+jwt"'
    for raw in (
        f'{{"alg":"none",{base},"alg":"{env.alg}"}}',  # last-wins would pick ours
        f'{{"alg":"{env.alg}",{base},"alg":"none"}}',
        f'{{"alg":"{env.alg}",{base},"kid":"other"}}',
        f'{{"alg":"{env.alg}",{base},"typ":"JWT"}}',
        f'{{"alg":"{env.alg}",{base},"\\u0061lg":"{env.alg}"}}',  # duplicate through an escape
    ):
        with pytest.raises(MalformedToken, match=r"duplicate|JSON"):
            env.verifier.verify(env.sign_raw(seg(raw.encode()), seg(env.claims())))


def test_a11_duplicate_members_in_payload(env: Env) -> None:
    c = json.dumps(env.claims(), separators=(",", ":"))[1:-1]
    for raw in (
        f'{{{c},"sub":"admin"}}',
        f'{{"sub":"admin",{c}}}',
        f'{{{c},"exp":9999999999}}',
        f'{{{c},"exp":1}}',
        f'{{{c},"s\\u0075b":"admin"}}',
        f'{{{c},"cnf":{{"jkt":"a","jkt":"b"}}}}',
    ):
        with pytest.raises(MalformedToken, match="duplicate"):
            env.verifier.verify(env.sign_raw(seg(env.header()), seg(raw.encode())))


# --------------------------------------------------------------------------- A12
NUMERIC_DATE_CASES: list[tuple[str, str, type[InvalidToken]]] = [
    ("exp", "NaN", MalformedToken),
    ("exp", "Infinity", MalformedToken),
    ("exp", "-Infinity", MalformedToken),
    ("exp", "1e400", MalformedToken),
    ("exp", '"9999999999"', InvalidClaims),
    ("exp", "true", InvalidClaims),
    ("exp", "null", InvalidClaims),
    ("exp", "[1]", InvalidClaims),
    ("exp", "{}", InvalidClaims),
    ("exp", "1.5", ExpiredToken),
    ("exp", "9" * 5000, MalformedToken),
    ("exp", "-1", ExpiredToken),
    ("exp", "0", ExpiredToken),
    ("iat", "NaN", MalformedToken),
    ("iat", '"0"', InvalidClaims),
    ("iat", "99999999999", ImmatureToken),
    ("iat", "false", InvalidClaims),
    ("nbf", "Infinity", MalformedToken),
    ("nbf", "99999999999", ImmatureToken),
    ("nbf", '"0"', InvalidClaims),
    ("nbf", "null", InvalidClaims),
]


@pytest.mark.parametrize(("claim", "value", "error"), NUMERIC_DATE_CASES)
def test_a12_numeric_date_edge_cases(
    env: Env, claim: str, value: str, error: type[InvalidToken]
) -> None:
    c = env.claims()
    c.pop(claim, None)
    body = json.dumps(c, separators=(",", ":"))[:-1] + f',"{claim}":{value}}}'
    token = env.sign_raw(seg(env.header()), seg(body.encode()))
    with pytest.raises(error):
        env.verifier.verify(token)


def test_a12_a_5000_digit_exp_never_becomes_a_python_int(env: Env) -> None:
    """Turning a decimal string into an int is quadratic in its length: the fast parser refuses
    the number (beyond 64 bits) and the standard library's parser never sees the document."""
    c = env.claims()
    c.pop("exp")
    body = json.dumps(c, separators=(",", ":"))[:-1] + ',"exp":' + "9" * 5000 + "}"
    token = env.sign_raw(seg(env.header()), seg(body.encode()))
    meter = WorkMeter(env.verifier)
    with pytest.raises(MalformedToken, match="JSON"):
        env.verifier.verify(token)
    assert meter.fallback_parses == 0
    assert meter.within(token, signature_checks=1)


def test_a12_exp_far_in_the_future_is_still_just_a_number(env: Env) -> None:
    claims = env.verifier.verify(env.token(payload=env.claims(exp=2**53)))
    assert claims.exp == 2**53


# --------------------------------------------------------------------------- A13
def test_a13_signature_stripping_and_malformed(env: Env) -> None:
    good = env.token()
    h, p, s = good.split(".")
    cases: dict[str, tuple[Any, type[InvalidToken]]] = {
        "h.p.": (f"{h}.{p}.", InvalidSignature),
        "h.p": (f"{h}.{p}", MalformedToken),
        "h.p.s.": (f"{good}.", MalformedToken),
        "h.p.s.foo": (f"{good}.foo", MalformedToken),
        ".p.s": (f".{p}.{s}", MalformedToken),
        "empty": ("", MalformedToken),
        "dots": ("..", MalformedToken),
        "json-serialisation": (
            json.dumps({"payload": p, "protected": h, "signature": s}),
            MalformedToken,
        ),
        "padding": (f"{h}=.{p}.{s}", MalformedToken),
        "padding-sig": (f"{h}.{p}.{s}==", MalformedToken),
        "std-alphabet": (good.replace("-", "+").replace("_", "/"), MalformedToken),
        "newline": (f"{h}.{p}\n.{s}", MalformedToken),
        "leading-space": (" " + good, MalformedToken),
        "trailing-newline": (good + "\n", MalformedToken),
        "bearer-prefix": ("Bearer " + good, MalformedToken),
        "header-array": (env.sign_raw(seg(b"[]"), p), MalformedToken),
        "header-null": (env.sign_raw(seg(b"null"), p), MalformedToken),
        "header-string": (env.sign_raw(seg(b'"x"'), p), MalformedToken),
        "header-not-utf8": (env.sign_raw(seg(b'{"alg":"\xff"}'), p), MalformedToken),
        "payload-array": (env.sign_raw(h, seg(b"[]")), MalformedToken),
        "payload-not-json": (env.sign_raw(h, seg(b"foo")), MalformedToken),
        "payload-not-utf8": (env.sign_raw(h, seg(b'{"sub":"\xff"}')), MalformedToken),
        "bytes-token": (good.encode(), MalformedToken),
        "none-token": (None, MalformedToken),
    }
    # trailing non-zero bits: the last character of a segment whose length % 4 != 0
    for name, part in (("header", 0), ("payload", 1), ("signature", 2)):
        segs = good.split(".")
        x = segs[part]
        if len(x) % 4:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            last = alphabet.index(x[-1])
            segs[part] = x[:-1] + alphabet[last | 1]
            if segs[part] != x:
                cases[f"trailing-bits-{name}"] = (".".join(segs), MalformedToken)
    if cases["std-alphabet"][0] == good:  # a token without any '-' or '_' has no +/ variant
        del cases["std-alphabet"]
    for name, (token, error) in cases.items():
        with pytest.raises(error):
            env.verifier.verify(token)
        assert name
    assert env.verifier.verify(good).sub == "alice"


def test_a13_every_single_character_change_is_rejected(es256: Env) -> None:
    """Bit-flip sweep over one token: no variant but the original verifies."""
    good = es256.token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(good):
        if ch == ".":
            continue
        repl = alphabet[(alphabet.index(ch) + 1) % 64]
        with pytest.raises(InvalidToken):
            es256.verifier.verify(good[:i] + repl + good[i + 1 :])


# --------------------------------------------------------------------------- A14
def test_a14_hs256_uses_compare_digest(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    e = make_env("HS256", clock)  # the verify function binds compare_digest when built
    token = e.token()
    assert e.verifier.verify(token).sub == "alice"
    assert calls == [(32, 32)]
    h, p, s = token.split(".")
    bad = ("A" if s[0] != "A" else "B") + s[1:]
    with pytest.raises(InvalidSignature):
        e.verifier.verify(f"{h}.{p}.{bad}")
    short = b64(b"\x00" * 16)
    with pytest.raises(InvalidSignature):
        e.verifier.verify(f"{h}.{p}.{short}")
    assert calls == [(32, 32), (32, 32), (32, 16)]


# --------------------------------------------------------------------------- A15
def _refused(verifier: Verifier, token: str, error: type[Exception]) -> WorkMeter:
    """Verify ``token`` expecting ``error``; the work it caused."""
    meter = WorkMeter(verifier)
    with pytest.raises(error):
        verifier.verify(token)
    return meter


def test_a15_one_megabyte_token(es256: Env) -> None:
    token = es256.token(payload=es256.claims(pad="x" * (1 << 20)))
    assert len(token) > 1 << 20
    assert _refused(es256.verifier, token, TokenTooLarge).nothing


def test_a15_hundred_thousand_dots(es256: Env) -> None:
    assert _refused(es256.verifier, "." * 100_000, TokenTooLarge).nothing
    # under the cap: refused by the segment count, still before any decoding
    assert _refused(es256.verifier, "." * 8000, MalformedToken).nothing


def test_a15_64k_header(es256: Env) -> None:
    token = es256.token(header=es256.header(x="y" * 65_536))
    assert _refused(es256.verifier, token, TokenTooLarge).nothing


def test_a15_deep_nesting(clock: FrozenClock) -> None:
    e = make_env("HS256", clock)
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    in_header = e.sign_raw(seg(deep), seg(e.claims()))
    in_payload = e.sign_raw(seg(e.header()), seg(deep))
    # with the cap: refused before decoding
    assert _refused(e.verifier, in_header, TokenTooLarge).nothing
    assert _refused(e.verifier, in_payload, TokenTooLarge).nothing
    # with the cap lifted: each segment decoded and parsed once, and the recursive parser of
    # the standard library never sees the nesting (orjson's depth limit refuses it)
    loose = Verifier(e.ring, issuer=ISS, audience=AUD, clock=clock, max_token_size=1 << 20)
    header_meter = _refused(loose, in_header, MalformedToken)
    assert header_meter.within(in_header, signature_checks=0)
    assert header_meter.fallback_parses == 0
    payload_meter = _refused(loose, in_payload, MalformedToken)
    assert payload_meter.within(in_payload, signature_checks=1)
    assert payload_meter.fallback_parses == 0
    # nesting that fits under 8 KiB is refused too (JSON depth limit), not a RecursionError
    shallow = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    token = e.sign_raw(seg(e.header()), seg(shallow))
    assert len(token) < 8192
    meter = _refused(e.verifier, token, MalformedToken)
    assert meter.within(token, signature_checks=1) and meter.fallback_parses == 0


def test_a15_huge_aud_array(clock: FrozenClock) -> None:
    e = make_env("HS256", clock)
    loose = Verifier(e.ring, issuer=ISS, audience=AUD, clock=clock, max_token_size=4 << 20)
    token = e.token(payload=e.claims(aud=[f"a{i}" for i in range(100_000)]))
    assert _refused(e.verifier, token, TokenTooLarge).nothing
    # with the cap lifted: one pass over the token (no re-parse per audience)
    meter = _refused(loose, token, InvalidClaims)
    assert meter.within(token, signature_checks=1) and meter.fallback_parses == 0


def test_work_meter_sees_a_whole_verification(es256: Env) -> None:
    """The meter of the A6/A12/A15 tests counts real work: a valid token is three segments
    decoded, two JSON documents parsed, one signature checked."""
    token = es256.token()
    meter = WorkMeter(es256.verifier)
    assert es256.verifier.verify(token).sub == "alice"
    assert sorted(meter.decoded) == sorted(len(part) for part in token.split("."))
    assert meter.parses == 2 and meter.signature_checks == 1 and meter.fallback_parses == 0
    assert not meter.nothing and meter.within(token, signature_checks=1)


# --------------------------------------------------------------------------- A16
def test_a16_es256_header_on_p384_key(clock: FrozenClock) -> None:
    e = make_env("ES384", clock)
    h, p = seg(e.header(alg="ES256")), seg(e.claims())
    with pytest.raises(UnsupportedAlgorithm):
        e.verifier.verify(e.sign_raw(h, p))  # a valid ES384 signature over it, even


@pytest.mark.parametrize(
    ("key_alg", "header_alg"),
    [
        ("ES256", "ES384"),
        ("ES256", "ES256K"),
        ("ES256", "ES512"),
        ("RS256", "PS256"),
        ("PS256", "RS256"),
        ("RS256", "RS384"),
        ("RS256", "RS512"),
        ("EdDSA", "Ed448"),
        ("EdDSA", "ES256"),
        ("HS256", "HS384"),
        ("HS256", "HS512"),
    ],
)
def test_a16_alg_not_the_keys_one_alg(key_alg: str, header_alg: str, clock: FrozenClock) -> None:
    e = make_env(key_alg, clock)
    with pytest.raises(UnsupportedAlgorithm, match="does not match"):
        e.verifier.verify(e.token(header=e.header(alg=header_alg)))


def test_a16_ps256_signature_by_an_rs256_key_is_refused(clock: FrozenClock) -> None:
    """The PSS signature is genuine (same RSA key), but the key's one algorithm is RS256."""
    e = make_env("RS256", clock)
    h, p = seg(e.header(alg="PS256")), seg(e.claims())
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    token = e.sign_raw(h, p, lambda m: e.key.private_key.sign(m, pss, hashes.SHA256()))
    with pytest.raises(UnsupportedAlgorithm):
        e.verifier.verify(token)


def test_a16_keys_whose_curve_does_not_fit_the_alg_are_refused_at_import() -> None:
    ed448_jwk = OKPKey.import_key(ed448.Ed448PrivateKey.generate().public_key()).as_dict()
    p384_jwk = ECKey.import_key(ec.generate_private_key(ec.SECP384R1()).public_key()).as_dict()
    p256_jwk = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()).public_key()).as_dict()
    for jwk, alg in (
        (ed448_jwk, "EdDSA"),
        (ed448_jwk, "Ed25519"),
        (p384_jwk, "ES256"),
        (p256_jwk, "ES384"),
        (p256_jwk, "ES256K"),
        (p256_jwk, "EdDSA"),
    ):
        with pytest.raises(KeyRingError):
            key_from_jwk({**jwk, "alg": alg})
        with pytest.raises(KeyRingError):
            Verifier({"keys": [{**jwk, "alg": alg}]}, issuer=ISS, audience=AUD)


def test_a16_both_ed25519_names_are_understood(clock: FrozenClock) -> None:
    """RFC 9864: ``Ed25519`` is the fully-specified name of EdDSA-with-Ed25519 (not a mismatch)."""
    e = make_env("EdDSA", clock)
    assert e.verifier.verify(e.token(header=e.header(alg="Ed25519"))).sub == "alice"

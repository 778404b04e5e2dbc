"""Access-token sign/verify cost: tokenward against PyJWT, joserfc, python-jose, jwcrypto and the
raw ``cryptography``/``hmac`` floor, for ES256, EdDSA, RS256 and HS256, in ONE process run.

Method:

* one token per algorithm, made by tokenward, verified by every library (each checked once to
  really accept it before timing);
* every library in its best-practice form: keys loaded once into the library's own key
  objects, algorithms pinned, registries/options built once;
* the same claim checks everywhere: signature, ``exp``, ``iat``, ``iss`` (exact), ``aud``
  (contains ours), ``sub``/``jti`` required; the claims come back as a dict;
* the floor is the primitive call only: ``hmac.digest`` / ``verify`` on the ``cryptography``
  key object with a ready DER (ES256) signature — no base64, no JSON;
* ``timeit`` with the GC on; every item is calibrated to ~``--target-ms`` per repeat and the
  repeats are interleaved round-robin across all items of an algorithm (so drift hits every
  library alike); the best (minimum) repeat is reported, in µs per operation — on a shared
  2-core machine the minimum is the stable figure (timeit's own advice), the median drifts
  with whatever else runs;
* "cached" is a hit of ``Verifier``'s verified-token cache with a *fresh* ``str`` each call
  (as a token just taken from a header: its hash is really computed).

``python bench/verify.py`` prints the markdown table and writes it into docs/benchmarks.md
between the ``bench:verify`` markers (``--no-write`` to skip). ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import hmac
import json
import platform
import sys
import time
import timeit
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokenward import KeyRing, Verifier
from tokenward.jws import JWSSigner, b64url_decode

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:verify:start -->", "<!-- bench:verify:end -->"
ALGS = ("ES256", "EdDSA", "RS256", "HS256")
PEERS = ("PyJWT", "joserfc", "python-jose", "jwcrypto")
ISS, AUD = "https://auth.example.com", "api"
REQUIRED = ("exp", "iat", "iss", "aud", "sub", "jti")

warnings.simplefilter("ignore")  # joserfc warns on every "EdDSA" call (RFC 9864); timed anyway


@dataclass
class Case:
    alg: str
    token: str
    verify: dict[str, Callable[[], Any]] = field(default_factory=dict)
    sign: dict[str, Callable[[], Any]] = field(default_factory=dict)


def _claims(now: int) -> dict[str, Any]:
    return {
        "iss": ISS,
        "sub": "user-1234567890",
        "aud": AUD,
        "exp": now + 3600,
        "iat": now,
        "jti": "3f2b7c1e9a8d4e6f8a1b2c3d4e5f6a7b",
        "client_id": "web-frontend",
        "scope": "openid profile read:orders write:orders",
        "sid": "s-8f14e45fceea167a5a36dedd4bea2543",
    }


def build(alg: str) -> Case:
    ring = KeyRing.generate(alg, with_next=False)
    key = ring.active
    claims = _claims(int(time.time()))
    signer = JWSSigner(key)
    token = signer.sign(claims)
    h, p, s = token.split(".")
    msg = f"{h}.{p}".encode("ascii")
    sig = b64url_decode(s)
    case = Case(alg, token)
    jwks = ring if alg == "HS256" else ring.public_jwks()

    # -- ours
    uncached = Verifier(jwks, issuer=ISS, audience=AUD, cache_size=0)
    cached = Verifier(jwks, issuer=ISS, audience=AUD)
    cached.verify(token)
    token_bytes = token.encode("ascii")
    case.verify["ours"] = lambda: uncached.verify(token)
    case.verify["ours cached"] = lambda: cached.verify(token_bytes.decode("ascii"))
    case.sign["ours"] = lambda: signer.sign(claims)

    # -- floor: the primitive call only
    pub, priv = key.public_key, key.private_key
    if alg == "HS256":
        secret = bytes(priv)
        case.verify["floor"] = lambda: hmac.digest(secret, msg, "sha256")
        case.sign["floor"] = lambda: hmac.digest(secret, msg, "sha256")
        base = c_hmac.HMAC(secret, hashes.SHA256())

        def pre() -> bytes:  # HMAC with the key schedule precomputed once
            h2 = base.copy()
            h2.update(msg)
            return h2.finalize()

        case.verify["floor (precomputed HMAC key)"] = pre
    elif alg == "RS256":
        pkcs, sha = padding.PKCS1v15(), hashes.SHA256()
        case.verify["floor"] = lambda: pub.verify(sig, msg, pkcs, sha)
        case.sign["floor"] = lambda: priv.sign(msg, pkcs, sha)
    elif alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())
        der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
        case.verify["floor"] = lambda: pub.verify(der, msg, ecdsa)
        case.sign["floor"] = lambda: priv.sign(msg, ecdsa)
    else:
        case.verify["floor"] = lambda: pub.verify(sig, msg)
        case.sign["floor"] = lambda: priv.sign(msg)

    headers = {"kid": key.kid, "typ": "at+jwt"}
    _add_pyjwt(case, alg, pub, priv, claims, headers)
    _add_joserfc(case, alg, key, claims)
    if alg != "EdDSA":  # python-jose has no EdDSA
        _add_python_jose(case, alg, key, claims, headers)
    _add_jwcrypto(case, alg, key, claims)

    for name, fn in case.verify.items():  # every library really accepts the token
        out = fn()
        if not name.startswith("floor") and _sub(out) != claims["sub"]:
            raise SystemExit(f"{alg} {name}: unexpected result {out!r}")
    return case


def _sub(out: Any) -> Any:
    if isinstance(out, dict):
        return out.get("sub")
    return getattr(out, "sub", None)


def _add_pyjwt(
    case: Case, alg: str, pub: Any, priv: Any, claims: dict[str, Any], headers: dict[str, str]
) -> None:
    import jwt

    vkey, skey = (bytes(pub), bytes(priv)) if alg == "HS256" else (pub, priv)
    opts = {"require": list(REQUIRED)}
    case.verify["PyJWT"] = lambda: jwt.decode(
        case.token, vkey, algorithms=[alg], audience=AUD, issuer=ISS, options=opts
    )
    case.sign["PyJWT"] = lambda: jwt.encode(claims, skey, algorithm=alg, headers=headers)


def _add_joserfc(case: Case, alg: str, key: Any, claims: dict[str, Any]) -> None:
    from joserfc import jwt
    from joserfc.jws import JWSRegistry

    registry = JWSRegistry(algorithms=[alg])
    claims_reg = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISS},
        aud={"essential": True, "value": AUD},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
    )
    jkey = key.jwk  # joserfc key object, loaded once (private part included: signs too)

    def verify() -> dict[str, Any]:
        tok = jwt.decode(case.token, jkey, registry=registry)
        claims_reg.validate(tok.claims)
        return dict(tok.claims)

    header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    case.verify["joserfc"] = verify
    case.sign["joserfc"] = lambda: jwt.encode(header, claims, jkey, registry=registry)


def _add_python_jose(
    case: Case, alg: str, key: Any, claims: dict[str, Any], headers: dict[str, str]
) -> None:
    from jose import jwk, jwt

    vkey = jwk.construct(key.private_jwk() if alg == "HS256" else key.public_jwk(), alg)
    skey = jwk.construct(key.private_jwk(), alg)
    opts = {f"require_{c}": True for c in REQUIRED}
    case.verify["python-jose"] = lambda: jwt.decode(
        case.token, vkey, algorithms=[alg], audience=AUD, issuer=ISS, options=opts
    )
    case.sign["python-jose"] = lambda: jwt.encode(claims, skey, algorithm=alg, headers=headers)


def _add_jwcrypto(case: Case, alg: str, key: Any, claims: dict[str, Any]) -> None:
    from jwcrypto import jwk, jwt

    jkey = jwk.JWK(**{k: v for k, v in key.private_jwk().items() if not k.startswith("tw_")})
    check = {"iss": ISS, "aud": AUD, "exp": None, "iat": None, "sub": None, "jti": None}

    def verify() -> dict[str, Any]:
        t = jwt.JWT(jwt=case.token, key=jkey, algs=[alg], check_claims=check)
        return dict(json.loads(t.claims))

    header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}

    def sign() -> str:
        t = jwt.JWT(header=header, claims=claims)
        t.make_signed_token(jkey)
        return str(t.serialize())

    case.verify["jwcrypto"] = verify
    case.sign["jwcrypto"] = sign


def breakdown_items(alg: str = "HS256") -> dict[str, Callable[[], Any]]:
    """The steps of one uncached verify, each timed on its own (where the µs go)."""
    from tokenward.claims import validate_claims
    from tokenward.jws import parse_json_object

    ring = KeyRing.generate(alg, with_next=False)
    token = JWSSigner(ring.active).sign(_claims(int(time.time())))
    v = Verifier(
        ring if alg == "HS256" else ring.public_jwks(), issuer=ISS, audience=AUD, cache_size=0
    )
    v.verify(token)
    jws = v._jws
    h, p, s = token.split(".")
    msg, sig = f"{h}.{p}".encode("ascii"), b64url_decode(s)
    payload = b64url_decode(p)
    obj = parse_json_object(payload, "payload")
    key = jws._header_cache[h]
    now = time.time()
    return {
        "split + header-cache lookup": lambda: jws._header_cache.get(token.split(".")[0]),
        "base64url payload + signature": lambda: (b64url_decode(p), b64url_decode(s)),
        "signature check (bound key, incl. compare)": lambda: key.verify(msg, sig),
        "payload JSON (orjson + duplicate guard)": lambda: parse_json_object(payload, "payload"),
        "claims validation + AccessTokenClaims": lambda: validate_claims(
            obj, issuer=ISS, audience=AUD, now=now, leeway=30.0
        ),
        "JWSVerifier.verify (all JWS steps)": lambda: jws.verify(token),
        "Verifier.verify (everything)": lambda: v.verify(token),
    }


# --------------------------------------------------------------------------- timing
def measure(items: dict[str, Callable[[], Any]], repeats: int, target_s: float) -> dict[str, float]:
    timers = {}
    for name, fn in items.items():
        t = timeit.Timer(fn)
        n, elapsed = 1, 0.0
        while True:  # calibrate: iterations for ~target_s per repeat
            elapsed = t.timeit(n)
            if elapsed >= target_s / 10:
                break
            n *= 4
        timers[name] = (t, max(1, int(n * target_s / elapsed)))
    samples: dict[str, list[float]] = {name: [] for name in items}
    for _ in range(repeats):
        for name, (t, n) in timers.items():
            samples[name].append(t.timeit(n) / n * 1e6)
    return {name: min(v) for name, v in samples.items()}


# --------------------------------------------------------------------------- report
def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def report(
    results: dict[str, dict[str, dict[str, float]]],
    tokens: dict[str, int],
    breakdown: dict[str, float],
) -> str:
    lines = []
    env = (
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"cryptography {version('cryptography')}, PyJWT {version('pyjwt')}, "
        f"joserfc {version('joserfc')}, python-jose {version('python-jose')}, "
        f"jwcrypto {version('jwcrypto')}, orjson {version('orjson')}"
    )
    lines.append(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {env}.")
    lines.append("")
    lines.append("**Verify** (signature + claims → claims), µs/op, best of interleaved repeats:")
    lines.append("")
    head = ["alg", "token chars", "floor", "ours uncached", "ours / floor", "ours cached"]
    head += [*PEERS, "fastest peer / ours"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for alg in ALGS:
        r = results[alg]["verify"]
        peers = {p: r.get(p) for p in PEERS}
        fastest = min(v for v in peers.values() if v is not None)
        row = [
            alg,
            str(tokens[alg]),
            _fmt(r["floor"]),
            f"**{_fmt(r['ours'])}**",
            f"{r['ours'] / r['floor']:.2f}×",
            _fmt(r["ours cached"]),
            *(_fmt(peers[p]) for p in PEERS),
            f"{fastest / r['ours']:.2f}×",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("**Sign** (claims → compact JWS), µs/op, best of interleaved repeats:")
    lines.append("")
    head = ["alg", "floor", "ours", "ours / floor", *PEERS, "fastest peer / ours"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for alg in ALGS:
        r = results[alg]["sign"]
        peers = {p: r.get(p) for p in PEERS}
        fastest = min(v for v in peers.values() if v is not None)
        row = [
            alg,
            _fmt(r["floor"]),
            f"**{_fmt(r['ours'])}**",
            f"{r['ours'] / r['floor']:.2f}×",
            *(_fmt(peers[p]) for p in PEERS),
            f"{fastest / r['ours']:.2f}×",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("**Targets**:")
    lines.append("")
    lines.append("| target | " + " | ".join(ALGS) + " |")
    lines.append("|---|" + "---|" * len(ALGS))
    floor_row, peer_row, cache_row = [], [], []
    for alg in ALGS:
        r = results[alg]["verify"]
        ratio = r["ours"] / r["floor"]
        limit = 3.0 if alg == "HS256" else 1.25
        floor_row.append(f"{'✅' if ratio <= limit else '❌'} {ratio:.2f}× (≤ {limit}×)")
        fastest = min(r[p] for p in PEERS if p in r)
        peer_row.append(
            f"{'✅' if fastest / r['ours'] >= 1.5 else '❌'} {fastest / r['ours']:.2f}×"
        )
        cache_row.append(f"{'✅' if r['ours cached'] <= 1.0 else '❌'} {r['ours cached']:.2f} µs")
    lines.append("| uncached verify vs floor | " + " | ".join(floor_row) + " |")
    lines.append("| fastest peer / ours (≥ 1.5×) | " + " | ".join(peer_row) + " |")
    lines.append("| cached verify (≤ 1 µs) | " + " | ".join(cache_row) + " |")
    hs = results["HS256"]["verify"]
    lines.append("")
    lines.append(
        f"HS256 floor with the HMAC key schedule precomputed once (a `cryptography` HMAC "
        f"`copy()`): {_fmt(hs['floor (precomputed HMAC key)'])} µs against "
        f"{_fmt(hs['floor'])} µs for the one-shot `hmac.digest` used as the floor above."
    )
    lines.append("")
    lines.append("**Where an uncached HS256 verify goes** (each step timed alone, µs/op):")
    lines.append("")
    lines.append("| step | µs |")
    lines.append("|---|---:|")
    for name, us in breakdown.items():
        lines.append(f"| {name} | {us:.2f} |")
    return "\n".join(lines)


def write_doc(table: str) -> None:
    section = f"{START}\n{table}\n{END}"
    if DOC.exists():
        text = DOC.read_text()
        if START in text and END in text:
            text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n## Access-token sign and verify (`bench/verify.py`)\n\n"
            text += section + "\n"
    else:
        text = (
            "# Benchmarks\n\nEvery figure is a ratio against a peer measured in the same run"
            "; absolute times belong to the machine.\n\n"
            "## Access-token sign and verify (`bench/verify.py`)\n\n" + section + "\n"
        )
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--target-ms", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="3 repeats of 5 ms (smoke run)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    repeats, target = (3, 0.005) if args.quick else (args.repeats, args.target_ms / 1000)
    results: dict[str, dict[str, dict[str, float]]] = {}
    tokens: dict[str, int] = {}
    t0 = time.perf_counter()
    for alg in ALGS:
        case = build(alg)
        tokens[alg] = len(case.token)
        results[alg] = {
            "verify": measure(case.verify, repeats, target),
            "sign": measure(case.sign, repeats, target),
        }
        print(f"# {alg} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    breakdown = measure(breakdown_items("HS256"), repeats, target)
    table = report(results, tokens, breakdown)
    print(table)
    if not args.no_write and not args.quick:
        write_doc(table)
        print(f"\nwritten to {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The DPoP attack corpus (``tests/attacks/dpop/cases.json``): forged, mismatched, replayed and
misplaced proofs (RFC 9449 §4.3, §7, §11; RFC 8725), each sent as a real HTTP request over
loopback to every place that takes a proof:

* ``token``: the password grant at ``/token`` of a live ``tokenward serve`` → 400
  ``invalid_dpop_proof``;
* ``refresh``: a DPoP-bound refresh token at ``/token`` → 400 (``invalid_dpop_proof``, or
  ``invalid_grant`` for a valid proof of another key);
* ``userinfo``: a DPoP-bound access token at ``/userinfo`` → 401 with a ``DPoP`` challenge;
* ``guard``: the same token at a FastAPI app guarded by :mod:`tokenward.guard` → 401.

A case is one line of JSON: ``header``/``claims`` are merged over a valid proof's (``$...``
values are filled in per target), ``drop`` removes members, ``sig`` says how it is signed,
``raw`` is a template over the valid segments, ``only`` restricts it to one target,
``replay``/``twice``/``no_proof``/``scheme`` change how it is sent, ``expect`` overrides the
error code. Afterwards the victim's session is untouched: the attacker got nothing, the user
keeps working (the stolen-token scenario).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import ECKey, RSAKey

from support.serve import Served, free_port, launch
from tokenward.dpop import DPoPKey, access_token_hash
from tokenward.jws import _make_sign_function

HERE = Path(__file__).parent
CASES: list[dict[str, Any]] = json.loads((HERE / "dpop" / "cases.json").read_text())
TARGETS = ("token", "userinfo", "guard", "refresh")
PASSWORD = "dpop attack corpus pw"
KNOWN = {"id", "attack", "header", "claims", "drop", "sig", "raw", "dup", "only", "replay",
         "twice", "no_proof", "scheme", "expect"}  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_dpop_corpus_is_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    for c in CASES:
        assert set(c) <= KNOWN, c["id"]
        assert c.get("only", "token") in TARGETS, c["id"]
    # every rejection RFC 9449 §4.3 lists has a case
    need = {"typ", "alg", "jwk", "sig", "htm", "htu", "iat", "jti", "ath", "replayed", "cnf"}
    have = " ".join(ids).lower().replace("key-not-cnf", "cnf")
    assert all(n in have for n in need), need - {n for n in need if n in have}


@dataclass
class Live:
    served: Served
    issuer: str
    key: DPoPKey  # the victim's key
    access_token: str
    refresh_token: str
    guard: Any  # a TestClient of a guarded FastAPI app
    http: httpx.Client


def _login(http: httpx.Client, issuer: str, base: str, key: DPoPKey) -> dict[str, Any]:
    r = http.post(
        f"{base}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": "app",
        },
        headers={"DPoP": key.proof("POST", f"{issuer}/token")},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from tokenward.claims import AccessTokenClaims
    from tokenward.guard.fastapi import Guard
    from tokenward.verifier import Verifier

    cwd = tmp_path_factory.mktemp("dpop-attacks")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = {
        "TOKENWARD_ISSUER": issuer,
        "TOKENWARD_STORE_URL": f"sqlite:///{cwd / 'tokenward.db'}",
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "8192",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "10000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "10000/minute",
    }
    from support.serve import run_cli

    # the API the tokens are for (the default resource "api"), a role holding its scope
    run_cli(settings, "resource", "add", "api", "--name", "API", "--scopes", "read",
            "--default-scopes", "read", cwd=cwd)  # fmt: skip
    run_cli(settings, "role", "add", "member", "--scopes", "read", cwd=cwd)
    run_cli(settings, "user", "add", "alice", "--password-stdin", "--roles", "member",
            stdin=PASSWORD + "\n", cwd=cwd)  # fmt: skip
    run_cli(settings, "client", "add", "app", "--public", "--grants", "password,refresh_token",
            "--resources", "api", "--scopes", "read", cwd=cwd)  # fmt: skip
    served = launch(settings, cwd=cwd, port=port)
    http = httpx.Client(timeout=10)
    try:
        served.wait_ready()
        key = DPoPKey.generate()
        body = _login(http, issuer, served.base, key)
        jwks = http.get(f"{served.base}/.well-known/jwks.json").json()
        guard = Guard(Verifier(jwks, issuer=issuer, audience="api"), realm="api")
        app = FastAPI()
        guard.install(app)

        @app.get("/orders")
        async def orders(claims: AccessTokenClaims = Depends(guard.require())) -> dict[str, str]:  # noqa: B008
            return {"sub": claims.sub}

        with TestClient(app) as client:
            yield Live(served, issuer, key, body["access_token"], body["refresh_token"], client,
                       http)  # fmt: skip
    finally:
        http.close()
        served.stop()


# ------------------------------------------------------------------ building a proof
def _target(live: Live, target: str) -> tuple[str, str, str | None]:
    """method, URL the proof must name, access token (for ath)."""
    if target in ("token", "refresh"):
        return "POST", f"{live.issuer}/token", None
    if target == "userinfo":
        return "GET", f"{live.issuer}/userinfo", live.access_token
    return "GET", "http://testserver/orders", live.access_token


def _fill(value: Any, htm: str, url: str) -> Any:
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    now = int(time.time())
    path = httpx.URL(url).path
    table: dict[str, Any] = {
        "$canary": "http://127.0.0.1:9/canary",
        "$big": "x" * 5000,
        "$other_method": "GET" if htm == "POST" else "POST",
        "$lower_method": htm.lower(),
        "$url": url,
        "$path": path,
        "$url_with_user": url.replace("://", "://mallory@", 1),
        "$now-3600": now - 3600,
        "$now+3600": now + 3600,
        "$now_string": str(now),
        "$ath_other": access_token_hash("another.access.token"),
    }
    if value.startswith("$issuer"):
        return url.rsplit("/", 1)[0] + value[len("$issuer") :]
    if value.startswith("$url/"):
        return url + value[len("$url") :]
    if value.startswith("https://evil.example$path"):
        return "https://evil.example" + path
    return table[value]


def build(live: Live, case: dict[str, Any], target: str) -> str:
    htm, url, at = _target(live, target)
    key = live.key
    sig = case.get("sig", "key")
    if sig == "other-key-valid":  # a fully valid proof, of the attacker's own key
        return DPoPKey.generate().proof(htm, url, access_token=at)
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    claims: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "htm": htm, "htu": url,
                              "iat": int(time.time())}  # fmt: skip
    if at is not None:
        claims["ath"] = access_token_hash(at)
    signer: Any = key.private_key
    alg = "ES256"
    if sig == "hs256":
        secret = secrets.token_bytes(32)
        header.update(alg="HS256", jwk={"kty": "oct", "k": b64(secret)})
        signer, alg = secret, "HS256"
    elif sig == "es384":
        sk = ec.generate_private_key(ec.SECP384R1())
        header.update(alg="ES384", jwk=ECKey.import_key(sk).as_dict(private=False))
        signer, alg = sk, "ES384"
    elif sig == "rsa1024":
        sk = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        header.update(alg="RS256", jwk=RSAKey.import_key(sk).as_dict(private=False))
        signer, alg = sk, "RS256"
    elif sig == "private-jwk":
        priv = key.to_jwk()
        priv.pop("alg")
        header["jwk"] = priv
    header.update({k: _fill(v, htm, url) for k, v in case.get("header", {}).items()})
    claims.update({k: _fill(v, htm, url) for k, v in case.get("claims", {}).items()})
    for name in case.get("drop", ()):
        header.pop(name, None)
        claims.pop(name, None)
    h = b64(json.dumps(header).encode())
    payload = json.dumps(claims)
    if "dup" in case:  # the same member twice (RFC 7519 §4): the second one names elsewhere
        payload = payload[:-1] + f', "{case["dup"]}": "https://evil.example/"}}'
    p = b64(payload.encode())
    si = f"{h}.{p}".encode()
    if sig == "none":
        s = ""
    elif sig == "other-key":
        s = b64(_make_sign_function("ES256", DPoPKey.generate().private_key)(si))
    else:
        raw = (
            _make_sign_function(alg, signer)(si)
            if alg != "HS256"
            else hmac.new(signer, si, hashlib.sha256).digest()
        )
        if sig == "flip":
            raw = raw[:-1] + bytes([raw[-1] ^ 1])
        elif sig == "der":
            raw = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        s = b64(raw)
    if "raw" in case:
        return str(case["raw"]).format(h=h, p=p, s=s)
    return f"{h}.{p}.{s}"


# ------------------------------------------------------------------ sending it
def send(live: Live, case: dict[str, Any], target: str, proofs: list[str]) -> httpx.Response:
    headers = [("DPoP", p) for p in proofs]
    if target == "token":
        return live.http.post(
            f"{live.served.base}/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": PASSWORD,
                "client_id": "app",
            },
            headers=headers,
        )
    if target == "refresh":
        return live.http.post(
            f"{live.served.base}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": live.refresh_token,
                "client_id": "app",
            },
            headers=headers,
        )
    scheme = case.get("scheme", "DPoP")
    headers.append(("Authorization", f"{scheme} {live.access_token}"))
    if target == "userinfo":
        return live.http.get(f"{live.served.base}/userinfo", headers=headers)
    resp: httpx.Response = live.guard.get("/orders", headers=headers)
    return resp


def _params() -> list[Any]:
    out = []
    for c in CASES:
        targets = [c["only"]] if "only" in c else ["token", "userinfo", "guard"]
        if c["id"] in ("DPOP-bound-token-as-bearer", "DPOP-scheme-without-proof"):
            targets = ["userinfo", "guard"]
        out += [pytest.param(c, t, id=f"{c['id']}-{t}") for t in targets]
    return out


@pytest.mark.parametrize(("case", "target"), _params())
def test_dpop_attack_is_refused(live: Live, case: dict[str, Any], target: str) -> None:
    if case.get("no_proof"):
        proofs: list[str] = []
    elif case.get("replay"):
        first = build(live, {"id": "valid"}, target)
        if target == "token" or target == "refresh":
            ok = send(live, case, target, [first])
            assert ok.status_code == 200, ok.text
            if target == "refresh":
                live.refresh_token = ok.json()["refresh_token"]
        else:
            assert send(live, case, target, [first]).status_code == 200
        proofs = [first]
    elif case.get("twice"):
        proofs = [build(live, {"id": "valid"}, target), build(live, {"id": "valid"}, target)]
    else:
        proofs = [build(live, case, target)]
    r = send(live, case, target, proofs)
    body = r.json()
    want = case.get("expect", "invalid_dpop_proof")
    assert body["error"] == want, (case["id"], target, body)
    if target in ("token", "refresh"):
        assert r.status_code == 400
    else:
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("DPoP algs=")
    assert live.access_token[:20] not in json.dumps(body)


def test_after_the_corpus_the_user_keeps_working(live: Live) -> None:
    # runs last in this module: no attack consumed, rotated or revoked the victim's session
    headers = {"Authorization": f"DPoP {live.access_token}",
               "DPoP": live.key.proof("GET", f"{live.issuer}/userinfo",
                                      access_token=live.access_token)}  # fmt: skip
    assert live.http.get(f"{live.served.base}/userinfo", headers=headers).status_code == 200
    r = live.http.post(
        f"{live.served.base}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": live.refresh_token,
            "client_id": "app",
        },
        headers={"DPoP": live.key.proof("POST", f"{live.issuer}/token")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"

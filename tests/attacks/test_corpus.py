"""The attack corpus end to end: every case of ``tests/attacks/*.json`` (the attacks
A1–A16 of ``docs/security.md``, forged refresh tokens, RFC 8725 profile checks) is sent as a real
HTTP request over loopback sockets to every place that accepts a token:

* ``Authorization: Bearer`` on ``/userinfo`` of a live ``tokenward serve`` subprocess and on
  the three example APIs (FastAPI, Flask, Django/DRF) guarded by ``tokenward.guard``;
* ``token`` on ``/introspect`` (confidential client) and ``/revoke`` (public client);
* ``refresh_token`` on ``/token`` and the browser-mode refresh cookie.

Expected: the documented rejection (bearer → 401 ``invalid_token``; introspection → exactly
``{"active": false}``; revocation → 200 with nothing revoked, RFC 7009 §2.2; refresh →
400 ``invalid_grant``), never a 5xx. Size cases (``"big": true``) may instead be refused by the
HTTP layer (400/413/431).

The hostile sizes and costs (``"gate"``: the 1 MB token, 100k dots, deep nesting, the p2c and
DEFLATE cases, a 5000-digit ``exp``) must be refused by the cheap check named in the case, before
any expensive work: a bearer answer's ``error_description`` names it (``GATES``: the size cap,
"JWE not accepted", the ``typ`` rule, the JSON parser), and a refresh entry point refuses them
by the refresh token's format ("malformed refresh token"), never looking them up. That is what
the time bounds of this suite used to stand for; the times themselves are measured in
``bench/attacks.py --only corpus`` (against PyJWT and joserfc in the same run), not asserted.

Afterwards: the canary session is untouched (no attack revoked or rotated it), the victim's
token still works for its own client, and the A7 canary listener had zero hits.

A new case is one line of JSON in ``tests/attacks/*.json`` (fields: :mod:`.forge`).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from support.forge import Forge
from support.live import Serve
from tokenward.clock import system_clock
from tokenward.keys import KeyRing
from tokenward.server.settings import decode_kek

HERE = Path(__file__).parent
CASES: list[dict[str, Any]] = [
    c for f in sorted(HERE.glob("*.json")) for c in json.loads(f.read_text())
]
BEARER = ("userinfo", "fastapi", "flask", "django")
FORM = ("introspect", "revoke", "token", "cookie")
ENTRY_POINTS = BEARER + FORM
TIMEOUT = 10.0
#: what refuses a ``"gate"`` case at a bearer entry point: its error_description
GATES = {
    "size": r"too large|token longer than \d+ characters",
    "jwe": r"encrypted \(JWE\) tokens are not accepted",
    "typ": r"^typ must be one of",
    "json": r"^payload is not valid UTF-8 JSON$",
}


def test_corpus_is_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    attacks = {c["attack"] for c in CASES}
    assert {f"A{i}" for i in range(1, 17)} <= attacks, "every attack A1–A16"
    assert {"RT"} <= attacks
    known = {"id", "attack", "note", "raw", "gen", "header", "header_raw", "claims",
             "claims_raw", "sig", "expect", "big", "gate"}  # fmt: skip
    for c in CASES:
        assert set(c) <= known, c["id"]
        assert c.get("gate", "size") in GATES, c["id"]


# -------------------------------------------------------------------------- the live system
@dataclass
class Live:
    serve: Serve
    apps: dict[str, Any]
    forge: Forge
    canary_hits: list[str]
    canary: dict[str, Any]
    victim: dict[str, Any]
    http: httpx.Client
    results: Counter[tuple[str, str]] = field(default_factory=Counter)
    # case id -> what was wrong with its answers (each case is sent once per live system)
    outcomes: dict[str, list[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def canary_listener() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()
    srv.server_close()


async def _load_ring(url: str, kek: bytes) -> KeyRing:
    from tokenward.store import store_from_url

    async with store_from_url(url) as store:
        blob = await store.load_keys()
    assert blob is not None
    return KeyRing.from_bytes(blob, kek)


def _refresh_values(rt: str, victim_rt: str, consumed: str, at: str) -> dict[str, str]:
    tail = rt[4:]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # the 43rd character carries 2 unused bits: make them non-zero (non-canonical base64url)
    last = alphabet[(alphabet.index(tail[-1]) & ~3) | 1]
    rand = "twr_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return {
        "rt_canary": rt,
        "rt_tail": tail,
        "rt_short": rt[:-1],
        "rt_trailing": rt[:-1] + last,
        "rt_random": rand,
        "rt_victim": victim_rt,
        "rt_consumed": consumed,
        "at_canary": at,
    }


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, canary_listener: tuple[str, list[str]]
) -> Iterator[Live]:
    import asyncio

    from support.examples import run_app

    tmp = tmp_path_factory.mktemp("attacks")
    serve = Serve(
        tmp, f"sqlite:///{tmp / 'tw.db'}", extra_env={"TOKENWARD_REFRESH_GRACE_SECONDS": "0"}
    )
    serve.start()
    apps: dict[str, Any] = {}
    http = httpx.Client(base_url=serve.base, timeout=TIMEOUT)
    try:
        ring = asyncio.run(_load_ring(serve.store_url, decode_kek((tmp / "kek").read_text())))
        target = SimpleNamespace(base=serve.base, secret=serve.web_secret)
        for name in ("fastapi", "flask", "django"):
            apps[name] = run_app(name, target, client_id="svc", clock=system_clock)
        canary = serve.login("alice", client_id="web", scope="read")
        victim = serve.login("alice", client_id="mobile", scope="read")
        throwaway = serve.login("u1", client_id="web", scope="read")
        r = http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                      "refresh_token": throwaway["refresh_token"]})  # fmt: skip
        assert r.status_code == 200, r.text
        url, hits = canary_listener
        forge = Forge(ring.active, serve.base, "api", system_clock.now, canary=url)
        forge.refresh = _refresh_values(
            canary["refresh_token"], victim["refresh_token"], throwaway["refresh_token"],
            canary["access_token"],
        )  # fmt: skip
        yield Live(serve, apps, forge, hits, canary, victim, http)
    finally:
        http.close()
        for a in apps.values():
            a.stop()
        serve.stop()


# -------------------------------------------------------------------------- sending
def _header_value(token: str) -> bytes | None:
    """The token as raw header bytes, or None when HTTP cannot carry it (CR, LF, NUL)."""
    raw = token.encode("utf-8", "surrogatepass")
    if any(b in raw for b in (b"\r", b"\n", b"\x00")) or raw != raw.strip():
        return None
    return raw


def _send(live: Live, ep: str, token: str) -> httpx.Response | None:
    """One request; None when the token cannot be sent this way."""
    if ep in BEARER:
        value = _header_value(token)
        if value is None:
            return None
        base = live.serve.base if ep == "userinfo" else live.apps[ep].base
        path = "/userinfo" if ep == "userinfo" else "/orders"
        return httpx.get(
            base + path,
            headers={b"Authorization": b"Bearer " + value if value else b"Bearer"},
            timeout=TIMEOUT,
        )
    if ep == "introspect":
        return live.http.post("/introspect", data={"token": token}, auth=live.serve.svc_auth)
    if ep == "revoke":
        return live.http.post("/revoke", data={"token": token, "client_id": "web"})
    if ep == "token":
        return live.http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "web"},
        )
    value = _header_value(token)
    if value is None:
        return None
    return httpx.post(
        live.serve.base + "/token",
        data={"grant_type": "refresh_token", "client_id": "web"},
        headers={b"Cookie": b"tokenward_rt=" + value, b"X-CSRF-Token": b"x"},
        timeout=TIMEOUT,
    )


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _check(ep: str, expect: str, big: bool, r: httpx.Response) -> str | None:
    """None when ``r`` is the documented answer, else what is wrong."""
    body = _json(r)
    if r.status_code >= 500:
        return f"{r.status_code} {r.text[:200]}"
    if big and r.status_code in (400, 413, 431):
        return None  # refused by the HTTP layer before any token handling
    if expect not in ("reject", "accept", "active") and ep not in BEARER:  # an OAuth error code
        ok = r.status_code in (400, 401) and isinstance(body, dict) and body.get("error") == expect
        return None if ok else f"expected {expect}, got {r.status_code} {body}"
    if expect == "accept":
        return None if r.status_code == 200 else f"expected 200, got {r.status_code} {r.text[:200]}"
    if ep in BEARER:
        if r.status_code == 400 and isinstance(body, dict):
            # RFC 6750 §3.1: a header that is not ``Bearer <b64token>`` is invalid_request
            err = body.get("error")
            return None if err == "invalid_request" else f"400 with {body}"
        if r.status_code != 401:
            return f"expected 401, got {r.status_code} {r.text[:200]}"
        challenge = r.headers.get("WWW-Authenticate", "")
        if 'error="invalid_token"' not in challenge and challenge.rstrip() not in (
            'Bearer realm="orders"',
            'Bearer realm="tokenward"',
        ):
            return f"401 without an RFC 6750 challenge: {challenge!r}"
        return None
    if ep == "introspect":
        if expect == "active":
            ok = r.status_code == 200 and body.get("active") is True
            return None if ok else f"expected active, got {r.status_code} {body}"
        ok = r.status_code == 200 and body == {"active": False}
        return None if ok else f"expected exactly {{'active': false}}, got {r.status_code} {body}"
    if ep == "revoke":
        return None if r.status_code == 200 else f"expected 200, got {r.status_code} {body}"
    return f"no rule for {ep}/{expect}"


def _expectation(case: dict[str, Any], ep: str) -> str:
    exp = case.get("expect", {})
    if ep in exp:
        return str(exp[ep])
    if ep in BEARER and "bearer" in exp:
        return str(exp["bearer"])
    if ep in ("token", "cookie"):
        return "invalid_grant"
    return "reject"


def _gate(case: dict[str, Any], ep: str, r: httpx.Response) -> str | None:
    """None when a ``"gate"`` case was refused by its cheap check (or by the HTTP layer, for
    a size case), else what refused it."""
    gate = case.get("gate")
    if gate is None or ep in ("introspect", "revoke"):  # RFC 7662 / 7009: no reason given
        return None
    if r.status_code in (413, 431) and gate == "size":
        return None
    body = _json(r)
    described = body.get("error_description", "") if isinstance(body, dict) else ""
    if ep in BEARER:
        ok = re.search(GATES[gate], str(described)) is not None
    else:  # the refresh token's format check: a JWT is never looked up or parsed
        ok = described == "malformed refresh token"
    return None if ok else f"not refused by the {gate} check: {r.status_code} {r.text[:200]}"


def _run_case(live: Live, case: dict[str, Any]) -> list[str]:
    """Send one case to every entry point (once per live system); what is wrong, if anything."""
    token = live.forge.build(case)
    problems: list[str] = []
    for ep in ENTRY_POINTS:
        expect = _expectation(case, ep)
        if expect == "skip":
            continue
        r = _send(live, ep, token)
        if r is None:
            live.results[(case["attack"], "not-sendable")] += 1
            continue
        problem = _check(ep, expect, bool(case.get("big")), r) or _gate(case, ep, r)
        if problem:
            problems.append(f"{ep}: {problem}")
        live.results[(case["attack"], ep)] += 1
    live.outcomes[case["id"]] = problems
    return problems


def _barrage(live: Live) -> None:
    """Every case not sent yet: the tests after the barrage pass alone and in any order (they
    send what the per-case tests have not sent; each case's answers are judged by its test)."""
    for case in CASES:
        if case["id"] not in live.outcomes:
            _run_case(live, case)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_attack_case(live: Live, case: dict[str, Any]) -> None:
    # sent already when a barrage test ran first: judge the answers it got
    problems = live.outcomes.get(case["id"])
    if problems is None:
        problems = _run_case(live, case)
    assert not problems, "\n".join(problems)


# -------------------------------------------------------------------------- afterwards
def test_nothing_legitimate_was_harmed_and_no_canary_hits(live: Live) -> None:
    """The barrage revoked nothing it should not have: the canary session refreshes, its
    access token is accepted; the victim's token still works for its own client; the jku/x5u
    canary was never fetched."""
    _barrage(live)
    at = live.canary["access_token"]
    assert live.http.get("/userinfo", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    for name, app in live.apps.items():
        assert app.get(at).status_code == 200, name
    r = live.http.post("/token", data={"grant_type": "refresh_token", "client_id": "web",
                                       "refresh_token": live.canary["refresh_token"]})  # fmt: skip
    assert r.status_code == 200, r.text
    r = live.http.post("/token", data={"grant_type": "refresh_token", "client_id": "mobile",
                                       "refresh_token": live.victim["refresh_token"]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert live.canary_hits == []


def test_report_attack_matrix(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    _barrage(live)
    sent = sum(n for (_, ep), n in live.results.items() if ep != "not-sendable")
    by_attack: Counter[str] = Counter()
    for (attack, ep), n in live.results.items():
        if ep != "not-sendable":
            by_attack[attack] += n
    with capsys.disabled():
        print(
            f"\nattack corpus: {len(CASES)} cases x {len(ENTRY_POINTS)} entry points, "
            f"{sent} requests, {live.results.total() - sent} not sendable as a header"
        )
        print("  per attack:", dict(sorted(by_attack.items())))
    assert sent >= len(CASES) * 6

"""Node's ``jose`` verifies our access tokens from a live JWKS (createRemoteJWKSet + jwtVerify)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.authstub import AUD, ISS, AuthStub
from support.env import service_missing
from support.examples import start_server
from tokenward.clock import FrozenClock
from tokenward.issuer import Issuer
from tokenward.keys import KeyRing

SCRIPT = r"""
const { createRemoteJWKSet, jwtVerify } = await import(process.env.JOSE_PATH);
const [url, iss, aud, ...tokens] = process.argv.slice(2);
const JWKS = createRemoteJWKSet(new URL(url));
const out = [];
for (const t of tokens) {
  try {
    const opts = { issuer: iss, audience: aud, typ: "at+jwt" };
    const { payload, protectedHeader } = await jwtVerify(t, JWKS, opts);
    out.push({ ok: true, sub: payload.sub, alg: protectedHeader.alg });
  } catch (e) {
    out.push({ ok: false, code: e.code });
  }
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def jose_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        service_missing("node/npm not installed: the Node jose interop test needs them")
    d = tmp_path_factory.mktemp("node-jose")
    r = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "jose@6"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if r.returncode != 0:
        service_missing(f"npm install jose failed (registry unreachable?): {r.stderr[-500:]}")
    return d


def test_node_jose_verifies_our_tokens(jose_dir: Path, stub: AuthStub):
    clock = FrozenClock(time.time())
    issuers = [
        Issuer(KeyRing.generate(alg, clock=clock), issuer=ISS, audience=AUD, clock=clock)
        for alg in ("ES256", "RS256", "EdDSA")
    ]
    stub.jwks = {"keys": [k for i in issuers for k in i.keyring.public_jwks()["keys"]]}
    good = [i.issue_access_token(sub=f"user-{n}", client_id="web") for n, i in enumerate(issuers)]
    wrong_aud = issuers[0].issue_access_token(sub="x", client_id="web", audience="other")
    script = jose_dir / "verify.mjs"
    script.write_text(SCRIPT)
    entry = jose_dir / "node_modules" / "jose" / "dist" / "webapi" / "index.js"
    if not entry.exists():
        entry = Path(
            subprocess.run(
                ["node", "-p", "require.resolve('jose')"],
                cwd=jose_dir,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    r = subprocess.run(
        ["node", str(script), stub.base + "/jwks.json", ISS, AUD, *good, wrong_aud],
        cwd=jose_dir,
        env={**os.environ, "JOSE_PATH": entry.as_uri()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out[:3] == [
        {"ok": True, "sub": "user-0", "alg": "ES256"},
        {"ok": True, "sub": "user-1", "alg": "RS256"},
        {"ok": True, "sub": "user-2", "alg": "EdDSA"},
    ]
    assert out[3] == {"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}


def _run_node(jose_dir: Path, jwks_url: str, iss: str, aud: str, *tokens: str) -> list[Any]:
    script = jose_dir / "verify.mjs"
    script.write_text(SCRIPT)
    entry = jose_dir / "node_modules" / "jose" / "dist" / "webapi" / "index.js"
    assert entry.exists(), "jose@6 layout changed"
    r = subprocess.run(
        ["node", str(script), jwks_url, iss, aud, *tokens],
        cwd=jose_dir,
        env={**os.environ, "JOSE_PATH": entry.as_uri()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def test_node_jose_verifies_tokens_of_a_live_server(jose_dir: Path, tmp_path: Path):
    """A real `tokenward serve`, its live JWKS, Node's createRemoteJWKSet + jwtVerify."""
    srv = start_server(tmp_path)
    try:
        token = srv.login("alice")["access_token"]
        jwks_url = srv.base + "/.well-known/jwks.json"
        ok, again = _run_node(jose_dir, jwks_url, srv.base, "api", token, token)
        assert ok == {"ok": True, "sub": "alice", "alg": "ES256"}
        out = _run_node(jose_dir, jwks_url, "http://evil.example", "api", token)
        assert out == [{"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}]
        assert again == ok  # the cached remote JWKS serves the second verification too
    finally:
        srv.stop()

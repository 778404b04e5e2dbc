"""``TokenManager(..., dpop=True)`` against a live ``tokenward serve`` that asks for DPoP nonces
(RFC 9449 §8): proofs at the token endpoint and on resource requests through the httpx and
requests auth objects, the nonce retries, the key kept in the storage, refresh with the bound
key, and a stolen copy of the access token that is useless as a bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.env import service_missing
from tokenward.client import FileTokenStorage, MemoryTokenStorage, TokenManager

from .conftest import CONSOLE, USER, USER_PW, Live, start_server, stop_server


@pytest.fixture(scope="module")
def nonce_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("dpop-serve")
    server = start_server(cwd, TOKENWARD_DPOP_NONCE="1")
    try:
        r = server.admin("POST", "/admin/users", json={"username": USER, "password": USER_PW})
        assert r.status_code == 201, r.text
        yield server
    finally:
        stop_server(server)


def test_a_dpop_manager_gets_bound_tokens_and_uses_them_through_httpx(nonce_live: Live) -> None:
    tm = TokenManager(nonce_live.base, CONSOLE, storage=MemoryTokenStorage(), dpop=True)
    before = nonce_live.counters()
    tm.login_password(USER, USER_PW)
    stored = tm.storage.load()
    assert stored is not None and stored["token_type"] == "DPoP"
    assert tm.dpop_key is not None and stored["dpop_jwk"]["d"]
    r = httpx.get(f"{nonce_live.base}/userinfo", auth=tm.httpx_auth())
    assert r.status_code == 200, r.text
    after = nonce_live.counters()
    # one use_dpop_nonce answer and one retry at /token; the nonce is then known for /userinfo
    assert after["requests/token"] - before.get("requests/token", 0) == 2
    assert after["requests/userinfo"] - before.get("requests/userinfo", 0) == 1
    # a copy of the access token is useless as a bearer token (RFC 9449 §7.2)
    stolen = httpx.get(
        f"{nonce_live.base}/userinfo", headers={"Authorization": f"Bearer {tm.access_token()}"}
    )
    assert stolen.status_code == 401


def test_refresh_is_made_with_the_bound_key(nonce_live: Live) -> None:
    tm = TokenManager(nonce_live.base, CONSOLE, dpop=True)
    tm.login_password(USER, USER_PW)
    first = tm.access_token()
    second = tm.token_after_rejection(first)  # forces one refresh
    assert second != first
    r = httpx.get(f"{nonce_live.base}/userinfo", auth=tm.httpx_auth())
    assert r.status_code == 200, r.text


def test_requests_auth_sends_dpop_proofs(nonce_live: Live) -> None:
    requests = pytest.importorskip("requests")
    tm = TokenManager(nonce_live.base, CONSOLE, dpop=True)
    tm.login_password(USER, USER_PW)
    r = requests.get(f"{nonce_live.base}/userinfo", auth=tm.requests_auth(), timeout=10)
    assert r.status_code == 200, r.text


def test_processes_sharing_a_file_storage_share_the_key(nonce_live: Live, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    a = TokenManager(nonce_live.base, CONSOLE, storage=FileTokenStorage(path), dpop=True)
    a.login_password(USER, USER_PW)
    b = TokenManager(nonce_live.base, CONSOLE, storage=FileTokenStorage(path), dpop=True)
    assert a.dpop_key is not None and b.dpop_key is not None
    assert b.dpop_key.jkt == a.dpop_key.jkt
    r = httpx.get(f"{nonce_live.base}/userinfo", auth=b.httpx_auth())
    assert r.status_code == 200, r.text
    assert "BEGIN" not in repr(b) and str(a.dpop_key.to_jwk()["d"]) not in repr(a.dpop_key)


BROWSER_SDK = Path(__file__).resolve().parents[2] / "clients" / "js" / "tokenward.js"
NODE_SCRIPT = r"""
const store = new Map();
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
const sdk = await import(process.argv[2]);
let kept;
const keyStore = {
  get: async () => kept,
  set: async (kp) => { kept = kp; },
  delete: async () => { kept = undefined; },
};
const c = new sdk.TokenwardClient({ issuer: process.argv[3], dpop: true, dpopKeyStore: keyStore });
await c.login({ username: process.argv[4], password: process.argv[5] });
const kp = await c.dpopKey();
const full = await crypto.subtle.exportKey('jwk', kp.publicKey);
let extractable = true;
try { await crypto.subtle.exportKey('jwk', kp.privateKey); } catch { extractable = false; }
const r = await c.fetch(`${process.argv[3]}/userinfo`);
console.log(JSON.stringify({
  status: r.status,
  body: await r.json(),
  cnf: c.claims.cnf,
  jkt: await sdk.jwkThumbprint(full),
  extractable,
}));
c.close();
process.exit(0);
"""


def test_the_browser_sdk_binds_its_tokens_to_a_non_extractable_key(
    nonce_live: Live, tmp_path: Path
) -> None:
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        service_missing("node is not installed: the browser SDK's DPoP test needs it")
    script = tmp_path / "dpop.mjs"
    script.write_text(NODE_SCRIPT)
    out = subprocess.run(
        [node, str(script), BROWSER_SDK.as_uri(), nonce_live.base, USER, USER_PW],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["body"]["sub"] == USER
    assert result["cnf"] == {"jkt": result["jkt"]}
    assert result["extractable"] is False

"""Node ``openid-client`` 6 (pinned in tests/oauth/node/package-lock.json) against a real
``tokenward serve``: discovery, authorization code + PKCE, ID token validation (nonce), userinfo,
refresh. The pages are driven by form posts from the same script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.env import service_missing
from support.oauth_live import ALICE_PW, SPA, SPA_CB, Live, start

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        service_missing("node/npm not installed: the openid-client interop test needs them")
    assert node is not None and npm is not None
    if not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        r = subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if r.returncode != 0:
            service_missing(f"npm ci failed (registry unreachable?): {r.stderr[-500:]}")
    return node


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from start("sqlite", tmp_path_factory.mktemp("oauth-node"))


def test_openid_client_discovery_code_pkce_id_token_userinfo_refresh(
    node_ready: str, live: Live
) -> None:
    env = {
        **os.environ,
        "ISSUER": live.base,
        "CLIENT_ID": SPA,
        "REDIRECT_URI": SPA_CB.replace("127.0.0.1/", "127.0.0.1:39999/"),
        "USERNAME": "alice",
        "PASSWORD": ALICE_PW,
    }
    r = subprocess.run(
        [node_ready, "flow.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["supportsPKCE"] is True  # it was False before this flow existed
    assert out["response_types"] == ["code"]
    assert out["sub"] == "alice" and out["aud"] == SPA and out["nonce_ok"] is True
    assert out["sid"]
    assert out["userinfo"] == {"sub": "alice", "preferred_username": "alice"}
    assert out["refreshed"] is True

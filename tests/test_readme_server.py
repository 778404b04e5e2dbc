"""The README's server quickstart works as written, its snippets together: the CLI lines that
describe the orders API, the clerk role, bob and the SPA; the curl sign-in; the guard that
protects the orders API. Only the port (a free one instead of 8000) and the path of the
``tokenward`` executable are substituted."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "tokenward"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Quickstart (server)")
    return text[start : text.index("\n## ", start + 10)]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", _section(), re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Any:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env.update(TOKENWARD_ADMIN_PASSWORD="admin password 1", TOKENWARD_ISSUER=base)
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        yield tmp_path, base, env
    finally:
        proc.terminate()
        proc.wait(10)


def _sh(script: str, cwd: Path, env: dict[str, str], base: str) -> str:
    script = script.replace(".venv-run/bin/tokenward", str(BIN)).replace(
        "http://127.0.0.1:8000", base
    )
    out = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_server_quickstart_snippets_work_together(served: Any) -> None:
    cwd, base, env = served
    setup, signin = _blocks("sh")[:2]
    out = _sh(setup, cwd, env, base)
    secret = re.search(r"client_secret: (\S+)", out)
    assert secret is not None, out

    curl = signin.split("\n.venv-run/bin/tokenward token inspect")[0]
    token = orjson.loads(_sh(curl, cwd, env, base))
    assert token["scope"] == "orders:read"
    inspected = _sh(
        f".venv-run/bin/tokenward token inspect {token['access_token']}", cwd, env, base
    )
    assert "https://orders.example.com" in inspected

    # what the README says next: a scope nobody gave bob is refused
    refused = _sh(curl.replace("scope=orders:read", "scope=orders:delete"), cwd, env, base)
    assert orjson.loads(refused)["error"] == "invalid_scope"

    guard_code = next(b for b in _blocks("python") if "guard.require" in b)
    guard_code = guard_code.replace("http://127.0.0.1:8000", base).replace(
        "THE_SECRET", secret.group(1)
    )
    namespace: dict[str, Any] = {}
    exec(compile(guard_code, "README.md", "exec"), namespace)
    from fastapi.testclient import TestClient

    with TestClient(namespace["app"]) as api:
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        ok = api.get("/orders", headers=auth)
        assert ok.status_code == 200 and ok.json() == {"user": "bob"}
        assert api.get("/orders").status_code == 401
        # a token for another API (the server's own, through the console) is refused
        console = httpx.post(
            f"{base}/token",
            data={
                "grant_type": "password",
                "client_id": "tokenward-console",
                "username": "bob",
                "password": "bob password 1",
            },
        ).json()
        other = api.get("/orders", headers={"Authorization": f"Bearer {console['access_token']}"})
        assert other.status_code == 401

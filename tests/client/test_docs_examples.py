"""docs/clients.md's CLI and web-service examples run as written (only the server's address
differs from ``make run``'s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from .conftest import Live

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def _example(heading: str) -> str:
    text = DOC.read_text()
    m = re.search(re.escape(heading) + r".*?```python\n(.*?)```", text, re.S)
    assert m is not None, f"no python example under {heading!r}"
    return m.group(1)


def _run(live: Live, tmp_path: Path, code: str, *args: str, **env: str) -> str:
    script = tmp_path / "example.py"
    script.write_text(code.replace("http://127.0.0.1:8000", live.base))
    out = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _own_server(live: Live) -> dict[str, Any]:
    """What the docs register: this server itself as the resource, its user-info scopes."""
    issuer = httpx.get(f"{live.base}/.well-known/oauth-authorization-server").json()["issuer"]
    return {"resources": [issuer], "scopes": ["openid", "profile"]}


def test_cli_example_signs_in_once_calls_and_logs_out(live: Live, tmp_path: Path) -> None:
    r = live.admin(
        "POST",
        "/admin/clients",
        json={
            "client_id": "my-cli",
            "public": True,
            "grants": ["password", "refresh_token"],
            **_own_server(live),
        },
    )
    assert r.status_code in (201, 409), r.text  # 409: registered by an earlier test
    code = _example("### A CLI (Python)")
    _run(live, tmp_path, code, "login")
    token_file = tmp_path / ".config" / "my-cli" / "tokens.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert "'sub': 'alice'" in _run(live, tmp_path, code)
    _run(live, tmp_path, code, "logout")
    assert not token_file.exists()


def test_service_example_uses_client_credentials(live: Live, tmp_path: Path) -> None:
    r = live.admin(
        "POST",
        "/admin/clients",
        json={
            "client_id": "my-service",
            "public": False,
            "grants": ["client_credentials"],
            **_own_server(live),
        },
    )
    assert r.status_code == 201, r.text
    before = live.counters().get("requests/token", 0.0)
    out = _run(
        live,
        tmp_path,
        _example("### A web service (Python, client credentials)"),
        MY_SERVICE_SECRET=r.json()["client_secret"],
    )
    assert out.strip() == "{200} my-service"
    assert live.counters()["requests/token"] - before == 1  # ten calls, one token


def test_spa_snippet_runs_in_a_page_of_the_server(live: Live, browser: Any) -> None:
    text = DOC.read_text()
    m = re.search(r"### An SPA \(browser, cookie mode\).*?```js\n(.*?)```", text, re.S)
    assert m is not None
    port = live.base.rsplit(":", 1)[1]
    ctx = browser.new_context(base_url=f"http://localhost:{port}")  # as the page says
    try:
        page = ctx.new_page()
        page.goto("/docs")
        logged = page.evaluate(
            "async () => { const out = []; const console = { log: (x) => out.push(x) };\n"
            + m.group(1)
            + "\nreturn out; }"
        )
        assert logged[0]["sub"] == "alice"
        assert page.evaluate("localStorage.getItem('my-spa:session')") is None  # signed out
    finally:
        ctx.close()

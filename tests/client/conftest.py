"""A real ``tokenward serve`` (one worker, SQLite, 2-second access tokens) for the client SDK
tests, plus readers of its Prometheus counters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.env import require_module, service_missing
from support.serve import Served, free_port, launch

ADMIN_PW = "client-sdk-admin-password"
USER = "alice"
USER_PW = "alice-password-1"  # the one docs/clients.md uses
CONSOLE = "tokenward-console"  # the built-in public first-party client (password grant)
ACCESS_TTL = 2
BIN = Path(sys.executable).parent / "tokenward"


@dataclass
class Live:
    base: str
    proc: subprocess.Popen[bytes]
    cwd: Path
    served: Served

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=10) as c:
            r = c.post(
                "/login",
                json={"username": "admin", "password": ADMIN_PW, "scope": "admin"},
            )
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            return c.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    def counters(self) -> dict[str, float]:
        """``{sample name: value}`` of /metrics, histogram counts summed per route
        (``requests{route}``)."""
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "tokenward_http_request_duration_seconds_count":
                    key = f"requests{s.labels['route']}"
                    out[key] = out.get(key, 0.0) + s.value
                elif not s.labels:
                    out[s.name] = s.value
        return out


def start_server(cwd: Path, **extra: str) -> Live:
    """``tokenward serve`` (one worker) on ``cwd/tokenward.db``; ``extra`` are more settings."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {
        "TOKENWARD_ISSUER": base,
        "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
        "TOKENWARD_STORE_URL": f"sqlite:///{cwd / 'tokenward.db'}",
        "TOKENWARD_ACCESS_TOKEN_TTL": str(ACCESS_TTL),
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "8192",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "1000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "5000/minute",
        **extra,
    }
    # a log file, not a pipe: thousands of access-log lines
    served = launch(
        settings, cwd=cwd, port=port, args=["--workers", "1"], log_path=cwd / "serve.log"
    )
    served.wait_ready()
    return Live(base, served.proc, cwd, served)


def stop_server(live: Live) -> None:
    live.served.stop()


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("client-serve")
    server = start_server(cwd)
    try:
        r = server.admin("POST", "/admin/users", json={"username": USER, "password": USER_PW})
        assert r.status_code == 201, r.text
        yield server
    finally:
        stop_server(server)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (never ``playwright install``)."""
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    sync_playwright = require_module("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()

"""Fixtures for the console tests: a real ``tokenward serve`` subprocess on a free loopback
port with a temporary SQLite store, and headless Debian Chromium driven by Playwright.

Browser tests skip with a clear reason when ``/usr/bin/chromium`` or Playwright is missing,
unless ``TOKENWARD_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_PW = "console-admin-password"
BIN = Path(sys.executable).parent / "tokenward"
# Screenshots go to docs/img/console-*.png with TOKENWARD_SCREENSHOTS=1 (to refresh the docs);
# otherwise to a temporary directory, so that `make test` leaves the working tree clean.
IMG = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("TOKENWARD_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "tokenward-console-screenshots"
)
_VIOLATIONS = ("Refused", "Trusted", "Content Security Policy")
REQUIRE = os.environ.get("TOKENWARD_REQUIRE_SERVICES") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (TOKENWARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """``tokenward serve`` reached at ``http://localhost:PORT`` (a secure context for
    Chromium, so the ``Secure`` refresh cookie is stored and sent over plain HTTP)."""

    base: str
    proc: subprocess.Popen[bytes]
    _admin: str | None = field(default=None, repr=False)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)

    def login(self, username: str, password: str, *, scope: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if scope:
            body["scope"] = scope
        with self.http() as c:
            r = c.post("/login", json=body)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def admin_token(self) -> str:
        return str(self.login("admin", ADMIN_PW, scope="admin")["access_token"])

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.http() as c:
            return c.request(
                method, path, headers={"Authorization": f"Bearer {self.admin_token()}"}, **kw
            )

    def add_user(self, username: str, password: str) -> None:
        r = self.admin("POST", "/admin/users", json={"username": username, "password": password})
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cwd = tmp_path_factory.mktemp("console-serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env.update(
        TOKENWARD_ADMIN_PASSWORD=ADMIN_PW,
        TOKENWARD_STORE_URL=f"sqlite:///{cwd / 'tokenward.db'}",
        TOKENWARD_REFRESH_GRACE_SECONDS="0",  # so a test can provoke reuse detection at once
        TOKENWARD_PASSWORD_TIME_COST="1",
        TOKENWARD_PASSWORD_MEMORY_COST="8192",
        TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT="100/minute",
        TOKENWARD_LOGIN_LIMIT_PER_IP="500/minute",
    )
    proc = subprocess.Popen(
        [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://localhost:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"tokenward serve exited: {err[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tokenward serve did not answer within 30 s")
            time.sleep(0.05)  # polling for start-up, not waiting for time to pass
        yield LiveServer(base, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    """A fresh browser context (own cookies) on the console, collecting page errors."""
    ctx = browser.new_context(
        base_url=live.base, viewport={"width": 1280, "height": 860}, device_scale_factor=1
    )
    pg = ctx.new_page()
    errors: list[str] = []  # uncaught exceptions and CSP / Trusted Types violations
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and any(w in m.text for w in _VIOLATIONS)
            else None
        ),
    )
    pg.set_default_timeout(10_000)
    pg.errors = errors
    try:
        yield pg
    finally:
        ctx.close()


def shot(page: Any, name: str, **kw: Any) -> Path:
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / f"console-{name}.png"
    page.screenshot(path=str(path), **kw)
    return path


def sign_in(page: Any, username: str, password: str, *, admin: bool = False) -> None:
    page.goto("/console")
    page.fill("#signin-username", username)
    page.fill("#signin-password", password)
    if admin:
        page.check("#signin-admin")
    page.click("#signin-submit")
    page.wait_for_selector("#view-sessions:not([hidden])")
    page.wait_for_selector(f"#who-name:text-is('{username}')")


# -- in-process app (no browser) -----------------------------------------------------------------

APP_ADMIN_PW = "admin password 1"
APP_ALICE_PW = "correct horse battery"


@dataclass
class App:
    http: Any  # fastapi.testclient.TestClient
    runtime: Any
    clock: Any

    def login(self, username: str, password: str, scope: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if scope:
            body["scope"] = scope
        r = self.http.post("/login", json=body)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def admin_headers(self) -> dict[str, str]:
        token = self.login("root", APP_ADMIN_PW, scope="admin")["access_token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app() -> Iterator[App]:
    from argon2 import PasswordHasher
    from fastapi.testclient import TestClient

    from tokenward.clock import FrozenClock
    from tokenward.server import create_app
    from tokenward.server.settings import Settings
    from tokenward.store.memory import MemoryStore

    clock = FrozenClock(1_800_000_000.0)
    settings = Settings(
        store_url="memory://",
        issuer="https://auth.tokenward.test",
        audience="api",
        refresh_grace_seconds=0,
    )
    application = create_app(
        settings,
        store=MemoryStore(),
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    with TestClient(application, base_url="https://testserver") as http:
        rt = application.state.runtime

        async def setup() -> None:
            await rt.users.create("alice", APP_ALICE_PW)
            await rt.users.create("root", APP_ADMIN_PW, is_admin=True)

        http.portal.call(setup)
        yield App(http, rt, clock)

"""Fixtures for the console tests: a real ``tokenward serve`` subprocess on a free loopback
port with a temporary SQLite store, and headless Debian Chromium driven by Playwright.

Browser tests skip with a clear reason when ``/usr/bin/chromium`` or Playwright is missing,
unless ``TOKENWARD_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.console import (
    _VIOLATIONS,
    ADMIN_PW,
    APP_ADMIN_PW,
    APP_ALICE_PW,
    CHROMIUM,
    CHROMIUM_ARGS,
    App,
    LiveServer,
)
from support.env import service_missing
from support.serve import serve


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``tokenward serve`` on a temporary SQLite store, reached at ``http://localhost:PORT``."""
    cwd = tmp_path_factory.mktemp("console-serve")
    settings = {
        "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
        "TOKENWARD_STORE_URL": f"sqlite:///{cwd / 'tokenward.db'}",
        "TOKENWARD_REFRESH_GRACE_SECONDS": "0",  # so a test can provoke reuse detection at once
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "8192",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "100/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "500/minute",
    }
    with serve(settings, cwd=cwd, base_host="localhost", log_path=cwd / "serve.log") as served:
        yield LiveServer(served.base, served)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("playwright is not installed (pip install -e '.[dev]')")
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
        revocation_max_staleness=30 * 86400,  # the frozen clock jumps; the feed is healthy
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

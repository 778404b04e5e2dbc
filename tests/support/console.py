"""The console tests' helpers: the live server's handle, Chromium's settings, screenshots,
signing in through the page, and the in-process app's handle."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.serve import Served

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
# Screenshots go to docs/img/console-*.png with TOKENWARD_SCREENSHOTS=1 (to refresh the docs);
# otherwise to a temporary directory, so that `make test` leaves the working tree clean.
IMG = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("TOKENWARD_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "tokenward-console-screenshots"
)
_VIOLATIONS = ("Refused", "Trusted", "Content Security Policy")


@dataclass
class LiveServer:
    """``tokenward serve`` reached at ``http://localhost:PORT`` (a secure context for
    Chromium, so the ``Secure`` refresh cookie is stored and sent over plain HTTP)."""

    base: str
    served: Served
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

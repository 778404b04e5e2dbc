"""A real ``tokenward serve`` for the oauth tests, on SQLite, PostgreSQL or Redis, with the
code-flow clients registered through the admin API, and a tiny "browser" that drives the pages
by form posts (it carries the ``__Host-tokenward-signin`` cookie itself: Python cookie jars
never send a ``Secure`` cookie over plain http, which browsers do for ``localhost``)."""

from __future__ import annotations

import base64
import html
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.stores import (
    POSTGRES_URL,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    postgres_problem,
    redis_problem,
)

ADMIN_PW = "oauth-admin-password"
ALICE_PW = "alice password 1"
BIN = Path(sys.executable).parent / "tokenward"
SPA = "spa"
SPA_CB = "http://127.0.0.1/cb"  # loopback: any port
REQUIRE = os.environ.get("TOKENWARD_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (TOKENWARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Live:
    base: str
    proc: subprocess.Popen[bytes]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=15)

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.http() as c:
            tok = c.post(
                "/login", json={"username": "admin", "password": ADMIN_PW, "scope": "admin"}
            ).json()["access_token"]
            return c.request(method, path, headers={"Authorization": f"Bearer {tok}"}, **kw)


def _store_env(kind: str, tmp: Path) -> dict[str, str]:
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    if kind == "sqlite":
        return {"TOKENWARD_STORE_URL": f"sqlite:///{tmp / 'tw.db'}"}
    if kind == "postgres":
        problem = postgres_problem()
        if problem:
            unavailable(problem)
        schema = "oauth_" + uuid.uuid4().hex[:10]
        return {
            "TOKENWARD_STORE_URL": f"{POSTGRES_URL}?schema={schema}",
            "TOKENWARD_KEY_ENCRYPTION_KEY": kek,
        }
    problem = redis_problem()
    if problem:
        unavailable(problem)
    return {
        "TOKENWARD_STORE_URL": REDIS_URL,
        "TOKENWARD_STORE_PREFIX": "oauth" + uuid.uuid4().hex[:10],
        "TOKENWARD_KEY_ENCRYPTION_KEY": kek,
    }


def start(kind: str, tmp: Path, **extra_env: str) -> Iterator[Live]:
    port = free_port()
    base = f"http://localhost:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env.update(_store_env(kind, tmp))
    env.update(
        TOKENWARD_ADMIN_PASSWORD=ADMIN_PW,
        TOKENWARD_ISSUER=base,
        TOKENWARD_PASSWORD_TIME_COST="1",
        TOKENWARD_PASSWORD_MEMORY_COST="8192",
        TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT="100/minute",
        TOKENWARD_LOGIN_LIMIT_PER_IP="500/minute",
        TOKENWARD_OUTBOUND_ALLOW_PRIVATE="1",
    )
    env.update(extra_env)
    proc = subprocess.Popen(
        [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 40
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
                pytest.fail("tokenward serve did not answer within 40 s")
            time.sleep(0.05)  # polling for start-up, not waiting for time to pass
        live = Live(base, proc)
        r = live.admin("POST", "/admin/users", json={"username": "alice", "password": ALICE_PW})
        assert r.status_code == 201, r.text
        r = live.admin(
            "POST",
            "/admin/clients",
            json={
                "client_id": SPA,
                "public": True,
                "grants": ["authorization_code", "refresh_token"],
                "redirect_uris": [SPA_CB],
                "name": "Example SPA",
                # OpenID Connect only: the server itself is its one resource
                "resources": [base],
                "scopes": ["openid", "profile"],
            },
        )
        assert r.status_code == 201, r.text
        yield live
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if "schema=" in env["TOKENWARD_STORE_URL"]:
            drop_postgres_schema(env["TOKENWARD_STORE_URL"].rsplit("schema=", 1)[1])
        if "TOKENWARD_STORE_PREFIX" in env:
            delete_redis_prefix(env["TOKENWARD_STORE_PREFIX"])


def _hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m is not None, page[:500]
    return html.unescape(m.group(1))


class Browser:
    """Follows the pages by form posts, keeping the sign-in cookie."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.cookie: str | None = None
        self.http = httpx.Client(timeout=15, follow_redirects=False)

    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"__Host-tokenward-signin={self.cookie}"} if self.cookie else {}

    def _keep(self, r: httpx.Response) -> None:
        for raw in r.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            if name == "__Host-tokenward-signin":
                self.cookie = rest.split(";", 1)[0] or None

    def get(self, url: str) -> httpx.Response:
        r = self.http.get(url, headers=self._headers())
        self._keep(r)
        return r

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        r = self.http.post(self.live.base + path, data=data, headers=self._headers())
        self._keep(r)
        return r

    def authorize(self, url: str, *, username: str = "alice", password: str = ALICE_PW) -> str:
        """Open the authorization URL, sign in and consent as needed; the redirect Location."""
        r = self.get(url)
        if r.status_code == 200 and 'name="password"' in r.text:
            r = self.post(
                "/authorize/signin",
                {
                    "request_id": _hidden(r.text, "request_id"),
                    "csrf_token": _hidden(r.text, "csrf_token"),
                    "username": username,
                    "password": password,
                },
            )
        if r.status_code == 200 and 'name="decision"' in r.text:
            r = self.post(
                "/authorize/consent",
                {
                    "request_id": _hidden(r.text, "request_id"),
                    "csrf_token": _hidden(r.text, "csrf_token"),
                    "decision": "allow",
                },
            )
        assert r.status_code in (302, 303), r.text[:500]
        return r.headers["location"]

    def close(self) -> None:
        self.http.close()

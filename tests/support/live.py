"""``tokenward serve`` as a real subprocess on any store, for the drills, the soak and the
attack corpus: start, ``kill -9``, restart on the same store, and isolated backends.

Backends: ``sqlite`` (a file in a temporary directory), ``redis`` (a unique key prefix,
``?prefix=`` in the URL, deleted afterwards), ``postgres`` (a fresh schema, dropped afterwards).
A backend whose service is unreachable is skipped, or fails with ``TOKENWARD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlunsplit

import httpx

from support.env import service_missing
from support.serve import Served, ServeError, free_port, launch
from support.stores import (
    POSTGRES_URL,
    REDIS_HOST,
    REDIS_PORT,
    postgres_problem,
    redis_problem,
    rerouted,
)

BIN = Path(sys.executable).parent / "tokenward"
PASSWORD = "correct horse battery staple"


def check_service(backend: str) -> None:
    """Skip (or fail in CI) when the backend's service does not answer."""
    problem = redis_problem() if backend == "redis" else postgres_problem()
    if problem is not None:
        service_missing(problem)


def redis_url(db: int, *, port: int | None = None, prefix: str | None = None) -> str:
    """The test Redis (``TOKENWARD_TEST_REDIS_URL``'s host and port) at database ``db``, or
    a proxy on loopback ``port`` in front of it."""
    netloc = f"127.0.0.1:{port}" if port else f"{REDIS_HOST}:{REDIS_PORT}"
    return urlunsplit(("redis", netloc, f"/{db}", f"prefix={prefix}" if prefix else "", ""))


@dataclass
class Backend:
    """One isolated store: ``url`` for the server; ``cleanup()`` afterwards."""

    name: str
    url: str
    cleanup: Callable[[], None] = lambda: None
    prefix: str = "tw"  # Redis key prefix


def make_backend(name: str, tmp: Path, *, redis_db: int = 12, port: int | None = None) -> Backend:
    """An isolated store of kind ``name``; ``port`` reroutes Redis/PostgreSQL (a fault proxy)."""
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp / 'tw.db'}")
    check_service(name)
    if name == "redis":
        import redis

        # a unique key prefix: concurrent runs (and other suites) may share the database
        prefix = f"twdrill{uuid.uuid4().hex[:10]}"

        def delete() -> None:
            c = redis.Redis.from_url(redis_url(redis_db), socket_connect_timeout=2)
            try:
                keys = list(c.scan_iter(match=f"*{prefix}*", count=1000))
                if keys:
                    c.delete(*keys)
            finally:
                c.close()

        url = redis_url(redis_db, port=port, prefix=prefix)
        return Backend(name, url, delete, prefix)
    if name == "postgres":
        from support.stores import drop_postgres_schema

        schema = f"tw_drill_{uuid.uuid4().hex[:10]}"
        url = POSTGRES_URL if port is None else rerouted(POSTGRES_URL, port)
        return Backend(name, f"{url}?schema={schema}", lambda: drop_postgres_schema(schema))
    raise ValueError(name)


@dataclass
class Serve:
    """A running (or killed) ``tokenward serve``; :meth:`restart` reuses port and store."""

    tmp: Path
    store_url: str
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    served: Served | None = None
    web_secret: str = ""
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"serve-{self.port}.log"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.served.proc if self.served is not None else None

    def settings(self) -> dict[str, str]:
        """Every ``TOKENWARD_*`` variable the server sees (no other is inherited)."""
        kek_file = self.tmp / "kek"
        if not kek_file.exists():
            kek_file.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        env = {
            "TOKENWARD_STORE_URL": self.store_url,
            "TOKENWARD_ISSUER": self.base,
            "TOKENWARD_ADMIN_PASSWORD": PASSWORD,
            "TOKENWARD_KEY_ENCRYPTION_KEY": kek_file.read_text(),
            "TOKENWARD_PASSWORD_TIME_COST": "1",
            "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
            "TOKENWARD_PASSWORD_PARALLELISM": "1",
            "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "100000/minute",
            "TOKENWARD_LOGIN_LIMIT_PER_IP": "100000/minute",
            "TOKENWARD_LOG_JSON": "true",
        }
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> Serve:
        self.served = launch(
            self.settings(),
            port=self.port,
            args=["--workers", str(self.workers)] if self.workers > 1 else [],
            log_path=self.log_path,
        )
        try:
            self.served.wait_ready(timeout)
        except ServeError as exc:
            raise RuntimeError(str(exc)) from None
        self.starts += 1
        if self.starts == 1:
            self._provision()
        return self

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _provision(self) -> None:
        """Users ``alice`` (and ``u0``..``u9``), ``root`` (admin); clients ``web`` (public),
        ``mobile`` (public) and ``svc`` (confidential: introspection, feed)."""
        admin = self.login("admin", client_id="tokenward-console", scope="admin")
        auth = {"Authorization": f"Bearer {admin['access_token']}"}
        with httpx.Client(base_url=self.base, headers=auth, timeout=10) as c:
            issuer = c.get("/.well-known/oauth-authorization-server").json()["issuer"]
            # the API the drills call ("api", the default resource) and a role holding its scopes
            for path, body in (
                ("/admin/resources", {"identifier": "api", "name": "API",
                                      "scopes": ["read", "write"], "default_scopes": ["read"]}),
                ("/admin/roles", {"name": "member", "scopes": ["read", "write"]}),
            ):  # fmt: skip
                r = c.post(path, json=body)
                assert r.status_code == 201, r.text
            member = ["member"]
            users: list[dict[str, Any]] = [
                {"username": "alice", "password": PASSWORD, "roles": member}
            ]
            users += [
                {"username": f"u{i}", "password": PASSWORD, "roles": member} for i in range(10)
            ]
            users.append(
                {"username": "root", "password": PASSWORD, "is_admin": True, "roles": member}
            )
            for body in users:
                r = c.post("/admin/users", json=body)
                assert r.status_code == 201, r.text
            for body in (
                {"client_id": "web", "public": True, "grants": ["password", "refresh_token"],
                 "resources": ["api"], "scopes": ["read", "write"]},
                {"client_id": "mobile", "public": True, "grants": ["password", "refresh_token"],
                 "resources": ["api"], "scopes": ["read", "write"]},
                {"client_id": "svc", "grants": ["client_credentials"],
                 "resources": ["api", issuer], "scopes": ["read", "revocations"]},
            ):  # fmt: skip
                r = c.post("/admin/clients", json=body)
                assert r.status_code == 201, r.text
                if body["client_id"] == "svc":
                    self.web_secret = r.json()["client_secret"]

    def login(
        self, user: str = "alice", *, client_id: str = "web", scope: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"username": user, "password": PASSWORD, "client_id": client_id}
        if scope:
            body["scope"] = scope
        r = httpx.post(f"{self.base}/login", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    @property
    def svc_auth(self) -> tuple[str, str]:
        return ("svc", self.web_secret)

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no flush."""
        if self.served is not None:
            self.served.kill9()

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()

    def restart(self) -> Serve:
        self.kill9()
        return self.start()

    def pids(self) -> list[int]:
        """The server process and its workers (for RSS figures)."""
        if self.proc is None:
            return []
        out = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            out += [int(p) for p in children.read_text().split()]
        return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

"""The example APIs (``examples/*_api``) and a ``tokenward serve`` for them to trust.

:func:`start_server` starts a provisioned server (:mod:`support.serve`); :func:`run_app` runs
one example app in this process on its own loopback port (uvicorn / werkzeug threads) with a
guard :class:`~tokenward.guard.Verifier` on a :class:`~tokenward.clock.FrozenClock`, so a
staleness limit is crossed by moving the clock, not by waiting.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.serve import Served, clean_env, free_port, launch
from support.wait import LIVENESS, wait_until
from tokenward.clock import FrozenClock
from tokenward.guard import Verifier

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "tokenward"
EXAMPLES = ("fastapi", "flask", "django")
PASSWORD = "correct horse battery staple"


@dataclass
class Server:
    base: str
    served: Served
    secret: str
    env: dict[str, str]

    def login(self, user: str = "alice", scope: str = "read") -> dict[str, Any]:
        client = "tokenward-console" if scope == "admin" else "web"
        r = httpx.post(
            f"{self.base}/login",
            json={"username": user, "password": PASSWORD, "client_id": client, "scope": scope},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def stop(self) -> None:
        self.served.stop()


def start_server(tmp: Path) -> Server:
    """``tokenward serve`` on a temporary SQLite store (nothing inherited from the caller's
    ``TOKENWARD_*``), with users ``alice`` and ``root`` (admin), the public client ``web`` and
    the confidential ``orders-api`` (its secret in :attr:`Server.secret`)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "TOKENWARD_STORE_URL": f"sqlite:///{tmp / 'tw.db'}",
        "TOKENWARD_ISSUER": base,
        "TOKENWARD_ADMIN_PASSWORD": PASSWORD,
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
        "TOKENWARD_PASSWORD_PARALLELISM": "1",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "1000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "1000/minute",
        "TOKENWARD_LOG_JSON": "true",
    }
    served = launch(env, port=port, log_path=tmp / "serve.log")
    served.wait_ready()
    srv = Server(base, served, "", clean_env(env))
    # users and clients through the admin API (the CLI would cost a process start each)
    r = httpx.post(
        f"{base}/login",
        json={"username": "admin", "password": PASSWORD, "client_id": "tokenward-console",
              "scope": "admin"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
    # the API the example apps protect ("api", the default resource) and who may use it
    for path, body in (
        ("/admin/resources", {"identifier": "api", "name": "Orders", "scopes": ["read", "write"],
                              "default_scopes": ["read"]}),
        ("/admin/roles", {"name": "member", "scopes": ["read", "write"]}),
        ("/admin/users", {"username": "alice", "password": PASSWORD, "roles": ["member"]}),
        ("/admin/users",
         {"username": "root", "password": PASSWORD, "is_admin": True, "roles": ["member"]}),
    ):  # fmt: skip
        r = httpx.post(f"{base}{path}", json=body, headers=admin)
        assert r.status_code == 201, r.text
    for body in (
        {"client_id": "web", "public": True, "grants": ["password", "refresh_token"],
         "resources": ["api"], "scopes": ["read", "write"]},
        {"client_id": "orders-api", "grants": ["client_credentials"]},
    ):  # fmt: skip
        r = httpx.post(f"{base}/admin/clients", json=body, headers=admin)
        assert r.status_code == 201, r.text
        if body["client_id"] == "orders-api":
            srv.secret = r.json()["client_secret"]
    return srv


def load_example(name: str) -> Any:
    if name == "django":
        from support.django_setup import configure

        configure()
    path = ROOT / "examples" / f"{name}_api" / "app.py"
    mod_name = f"tokenward_example_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    if name == "django":
        from django.urls import clear_url_caches

        from support import django_setup

        django_setup.urlpatterns[:] = mod.urlpatterns
        clear_url_caches()
    return mod


@dataclass
class RunningApp:
    name: str
    base: str
    verifier: Verifier
    clock: FrozenClock
    stop: Callable[[], None]

    def advance(self, seconds: float) -> None:
        """Move the API's clock, then let its mirror hear from the feed at the new time."""
        self.clock.advance(seconds)
        m = self.verifier.mirror
        assert m is not None
        assert wait_until(lambda: m.last_sync >= self.clock.now(), timeout=LIVENESS)

    def get(self, token: str, path: str = "/orders") -> httpx.Response:
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {token}"})


def run_app(name: str, server: Server, **kw: Any) -> RunningApp:
    clock = FrozenClock(time.time())
    opts: dict[str, Any] = dict(
        jwks_url=f"{server.base}/.well-known/jwks.json",
        issuer=server.base,
        audience="api",
        revocations_url=f"{server.base}/revocations",
        client_id="orders-api",
        client_secret=server.secret,
        clock=clock,
        max_staleness=60.0,
        feed_wait=2.0,
    )
    opts.update(kw)
    verifier = Verifier(**opts).start()
    app = load_example(name).create_app(verifier)
    port = free_port()
    if name == "fastapi":
        import uvicorn

        userver = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        t = threading.Thread(target=userver.run, daemon=True)
        t.start()

        def stop() -> None:
            userver.should_exit = True
            t.join(5)
            verifier.close()
    else:
        from werkzeug.serving import make_server

        wserver = make_server("127.0.0.1", port, app, threaded=True)
        t = threading.Thread(target=wserver.serve_forever, daemon=True)
        t.start()

        def stop() -> None:
            wserver.shutdown()
            t.join(5)
            verifier.close()

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/orders", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.02)
    return RunningApp(name, base, verifier, clock, stop)

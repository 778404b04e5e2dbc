"""The example APIs against a live ``tokenward serve`` over real sockets.

Each example app runs in this process on its own loopback port (uvicorn / werkzeug threads)
with a guard Verifier on a FrozenClock, so the staleness limit is crossed by moving the clock,
not by waiting. The server is a real subprocess with a temporary SQLite store.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenward.clock import FrozenClock
from tokenward.guard import Verifier

from .conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "tokenward"
EXAMPLES = ("fastapi", "flask", "django")
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(BIN), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_server(tmp: Path) -> Server:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        TOKENWARD_STORE_URL=f"sqlite:///{tmp / 'tw.db'}",
        TOKENWARD_ISSUER=base,
        TOKENWARD_PASSWORD_TIME_COST="1",
        TOKENWARD_PASSWORD_MEMORY_COST="1024",
        TOKENWARD_PASSWORD_PARALLELISM="1",
        TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT="1000/minute",
        TOKENWARD_LOGIN_LIMIT_PER_IP="1000/minute",
        TOKENWARD_LOG_JSON="true",
    )
    env["TOKENWARD_ADMIN_PASSWORD"] = PASSWORD
    store = ["--store", env["TOKENWARD_STORE_URL"]]
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - kept open for the process
    proc = subprocess.Popen(
        [str(BIN), "serve", *store, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    srv = Server(base, proc, "", env)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError((tmp / "serve.log").read_text())
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            srv.stop()
            raise RuntimeError("tokenward serve did not start")
        time.sleep(0.05)
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


def load_example(name: str) -> Any:
    if name == "django":
        from .django_setup import configure

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

        from . import django_setup

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
        assert wait_until(lambda: m.last_sync >= self.clock.now(), timeout=5.0)

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


@pytest.fixture(params=EXAMPLES)
def app(request: pytest.FixtureRequest, server: Server) -> Iterator[RunningApp]:
    a = run_app(request.param, server)
    yield a
    a.stop()


def rejected_within(app: RunningApp, token: str, limit: float = 1.0) -> float | None:
    """Seconds until the API answers 401 for ``token`` (None: not within ``limit``)."""
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) <= limit:
        r = app.get(token)
        if r.status_code == 401:
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            return elapsed
        assert r.status_code == 200
        time.sleep(0.01)
    return None


def test_login_call_then_session_revocation(app: RunningApp, server: Server):
    pair = server.login()
    token = pair["access_token"]
    r = app.get(token)
    assert r.status_code == 200 and r.json()["sub"] == "alice"
    if app.name == "django":
        assert app.get(token, "/api/orders").status_code == 200
    sid = _sid_of(token)
    d = httpx.delete(f"{server.base}/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert d.status_code in (200, 204), d.text
    lag = rejected_within(app, token)
    assert lag is not None, f"{app.name}: revoked session still accepted after 1 s"
    r = httpx.get(app.base + "/orders")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] in ('Bearer realm="orders"', 'Bearer realm="api"')


def _sid_of(token: str) -> str:
    import base64

    import orjson

    payload = token.split(".")[1]
    return str(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


def test_logout_everywhere(app: RunningApp, server: Server):
    tokens = [server.login()["access_token"] for _ in range(3)]
    assert all(app.get(t).status_code == 200 for t in tokens)
    r = httpx.post(f"{server.base}/logout-all", headers={"Authorization": f"Bearer {tokens[0]}"})
    assert r.status_code == 200, r.text
    for t in tokens:
        assert rejected_within(app, t) is not None
    other = server.login(user="root")["access_token"]
    assert app.get(other).status_code == 200  # other subjects unaffected


def test_key_rotation_without_restart(app: RunningApp, server: Server):
    admin = server.login(user="root", scope="admin")["access_token"]
    auth = {"Authorization": f"Bearer {admin}"}
    before = server.login()["access_token"]
    assert app.get(before).status_code == 200
    for _ in range(2):  # the second rotation signs with a key the API has never seen
        r = httpx.post(f"{server.base}/admin/keys/rotate", headers=auth)
        assert r.status_code == 200, r.text
        app.advance(31)  # past the unknown-kid cooldown
        fresh = server.login()["access_token"]
        assert app.get(fresh).status_code == 200
    assert app.get(before).status_code == 200  # retired keys stay published


def test_server_unreachable_then_fail_closed(tmp_path: Path):
    srv = start_server(tmp_path)
    apps = []
    try:
        apps = [run_app(name, srv, max_staleness=30.0) for name in EXAMPLES]
        token = srv.login()["access_token"]
        assert all(a.get(token).status_code == 200 for a in apps)
        srv.stop()  # the authorization server goes away
        for a in apps:
            a.clock.advance(29)
            assert a.get(token).status_code == 200  # cached verification continues
            a.clock.advance(2)
            r = a.get(token)
            assert r.status_code == 503, (a.name, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1
    finally:
        for a in apps:
            a.stop()
        srv.stop()


# -- the authorization model end to end ---------------------------------------------------------
def _admin_headers(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.login(user='admin', scope='admin')['access_token']}"}


def _admin_call(server: Server, method: str, path: str, body: dict[str, Any]) -> Any:
    r = httpx.request(method, f"{server.base}{path}", json=body, headers=_admin_headers(server))
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_rfc8707_token_for_one_api_is_refused_by_the_guard_of_another(server: Server):
    """Two example APIs, one per resource: the orders API ("api") and a billing API."""
    billing = "https://billing.example"
    _admin_call(
        server,
        "POST",
        "/admin/resources",
        {"identifier": billing, "name": "Billing", "scopes": ["billing:read"]},
    )
    orders_app = run_app("fastapi", server)
    billing_app = run_app("fastapi", server, audience=billing)
    try:
        token = server.login()["access_token"]  # alice, scope read, aud "api"
        assert orders_app.get(token).status_code == 200
        refused = billing_app.get(token)
        assert refused.status_code == 401
        assert "aud" in refused.headers["WWW-Authenticate"]
    finally:
        orders_app.stop()
        billing_app.stop()


def test_role_change_with_now_reaches_the_guard_through_the_feed(server: Server):
    """``tokenward user roles … --now`` (the CLI, writing the server's store) revokes the
    affected session; the sid event reaches the API's guard through the feed."""
    _admin_call(
        server,
        "POST",
        "/admin/users",
        {"username": "carol", "password": PASSWORD, "roles": ["member"]},
    )
    app = run_app("fastapi", server)
    try:
        token = server.login(user="carol")["access_token"]
        assert app.get(token).status_code == 200
        out = cli(server.env, "user", "roles", "carol", "", "--now")
        assert "revoked 1 session(s)" in out
        assert rejected_within(app, token, limit=5.0) is not None
    finally:
        app.stop()


def test_encrypted_tokens_end_to_end_for_a_resource_with_a_key(server: Server):
    """A resource registers its public P-256 key: its tokens are a signed JWT nested in a
    JWE (ECDH-ES+A256KW, A256GCM); its guard decrypts with the private key."""
    from joserfc.jwk import ECKey

    from tokenward.errors import InvalidToken

    vault = "https://vault.example"
    key = ECKey.generate_key("P-256")
    public, private = key.as_dict(private=False), key.as_dict(private=True)
    _admin_call(
        server,
        "POST",
        "/admin/resources",
        {"identifier": vault, "name": "Vault", "scopes": ["vault:read"], "encryption_key": public},
    )
    _admin_call(server, "POST", "/admin/roles", {"name": "vaulter", "scopes": ["vault:read"]})
    _admin_call(server, "PUT", "/admin/users/root/roles", {"roles": ["admin", "member", "vaulter"]})
    _admin_call(
        server,
        "PATCH",
        "/admin/clients/web",
        {"resources": ["api", vault], "scopes": ["read", "write", "vault:read"]},
    )
    r = httpx.post(
        f"{server.base}/login",
        json={
            "username": "root",
            "password": PASSWORD,
            "client_id": "web",
            "resource": vault,
            "scope": "vault:read",
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 4  # compact JWE
    common = dict(jwks_url=f"{server.base}/.well-known/jwks.json", issuer=server.base)
    with Verifier(audience=vault, decryption_key=private, **common) as reader:
        claims = reader.verify(token)
        assert claims.sub == "root" and claims.scope == "vault:read" and claims.aud == (vault,)
    with Verifier(audience=vault, **common) as blind, pytest.raises(InvalidToken):
        blind.verify(token)

"""The example APIs against a live ``tokenward serve`` over real sockets, following its
revocation feed by long-poll and (the FastAPI example) by SSE.

Each example app runs in this process on its own loopback port (uvicorn / werkzeug threads)
with a guard Verifier on a FrozenClock, so the staleness limit is crossed by moving the clock,
not by waiting. The server is a real subprocess with a temporary SQLite store and none of
the caller's ``TOKENWARD_*`` variables.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.examples import EXAMPLES, RunningApp, Server, run_app, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


# every example on the long-poll feed; the SSE feed (one event-stream connection) through the
# FastAPI example, against the same real server
MODES = [(name, "longpoll") for name in EXAMPLES] + [("fastapi", "sse")]


@pytest.fixture(params=MODES, ids=[f"{name}-{mode}" for name, mode in MODES])
def app(request: pytest.FixtureRequest, server: Server) -> Iterator[RunningApp]:
    name, mode = request.param
    a = run_app(name, server, feed_mode=mode)
    assert a.verifier.mirror is not None and a.verifier.mirror.mode == mode
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

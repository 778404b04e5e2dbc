"""The pure-ASGI dispatch of ``/userinfo``, ``/introspect`` and ``/healthz``
(``tokenward.server.fastpath``) answers exactly as the FastAPI routes do — status, body and the
headers of the error contract — for good and bad requests alike, and records the same metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support.server import Server, basic, bearer
from tokenward.server.fastpath import FastPathAPI

HEADERS = ("content-type", "cache-control", "pragma", "www-authenticate", "retry-after")


def _requests(server: Server) -> list[tuple[str, str, dict[str, Any]]]:
    tok = server.login()["access_token"]
    svc = server.svc()
    form = {"content-type": "application/x-www-form-urlencoded"}
    return [
        ("GET", "/userinfo", {"headers": bearer(tok)}),
        ("GET", "/userinfo", {}),
        ("GET", "/userinfo", {"headers": bearer("not.a.token")}),
        ("GET", "/userinfo", {"headers": {"Authorization": "Basic abc"}}),
        ("GET", "/userinfo", {"headers": {"Authorization": f"DPoP {tok}"}}),
        ("GET", "/userinfo", {"headers": bearer(tok[:-4] + "AAAA")}),
        ("POST", "/userinfo", {"headers": bearer(tok)}),  # not dispatched: 405 either way
        ("POST", "/introspect", {"data": {"token": tok}, "headers": svc}),
        ("POST", "/introspect", {"data": {"token": "nope"}, "headers": svc}),
        ("POST", "/introspect", {"data": {"token": tok}}),
        ("POST", "/introspect", {"data": {"token": tok}, "headers": basic("svc", "wrong")}),
        ("POST", "/introspect", {"data": {}, "headers": svc}),
        ("POST", "/introspect", {"content": b"token=a&token=b", "headers": {**svc, **form}}),
        ("POST", "/introspect", {"json": {"token": tok}, "headers": svc}),
        ("GET", "/healthz", {}),
    ]


def _answer(server: Server, method: str, path: str, kw: dict[str, Any]) -> tuple[Any, ...]:
    r = server.http.request(method, path, **kw)
    return (r.status_code, r.content, {h: r.headers.get(h) for h in HEADERS})


def test_every_answer_is_the_routes_answer(server: Server) -> None:
    app = server.http.app
    assert isinstance(app, FastPathAPI) and app.fast_path is not None
    requests = _requests(server)
    fast = [_answer(server, *req) for req in requests]
    saved, app.fast_path = app.fast_path, None  # everything through FastAPI's routes
    try:
        routed = [_answer(server, *req) for req in requests]
    finally:
        app.fast_path = saved
    for req, a, b in zip(requests, fast, routed, strict=True):
        assert a == b, req[:2]
    statuses = [a[0] for a in fast]
    assert statuses == [200, 401, 401, 401, 401, 401, 405, 200, 200, 401, 401, 400, 400, 400, 200]


@pytest.mark.parametrize("route", ["/userinfo", "/introspect", "/healthz"])
def test_dispatched_requests_are_measured_by_route(
    server_factory: Callable[..., Server], route: str
) -> None:
    server = server_factory()
    tok = server.login()["access_token"]
    if route == "/introspect":
        r = server.http.post(route, data={"token": tok}, headers=server.svc())
    else:
        r = server.http.get(route, headers=bearer(tok))
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 16
    text = server.http.get("/metrics").text
    method = "POST" if route == "/introspect" else "GET"
    assert (
        f'tokenward_http_request_duration_seconds_count{{method="{method}",route="{route}",'
        f'status="200"}} 1.0'
    ) in text


def test_a_root_path_goes_through_the_routes(server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    app = server.http.app
    assert isinstance(app, FastPathAPI)
    app.root_path = "/auth"
    try:
        r = server.http.get("/healthz")
    finally:
        app.root_path = ""
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_a_servers_root_path_goes_through_the_routes(server: Server) -> None:
    app = server.http.app
    assert isinstance(app, FastPathAPI) and app.fast_path is not None
    saved = app.fast_path
    dispatched: list[str] = []

    async def sentinel(scope: Any, receive: Any, send: Any) -> None:
        dispatched.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.fast_path = sentinel

    async def under_root_path() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": "/healthz",
            "raw_path": b"/healthz",
            "root_path": "/auth",  # set by the server (uvicorn --root-path)
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "client": ("192.0.2.10", 50000),
            "server": ("testserver", 443),
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        return statuses[0]

    try:
        assert server.http.get("/healthz").status_code == 299
        status = server.run(under_root_path)
    finally:
        app.fast_path = saved
    assert dispatched == ["/healthz"]  # once: not the request under the server's root path
    assert status == 200

"""The pure-ASGI dispatch of ``/userinfo``, ``/introspect`` and ``/healthz``
(``tokenward.server.fastpath``) answers exactly as the FastAPI routes do — status, body and the
headers of the error contract — for good and bad requests alike, and records the same metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support.server import Server, basic, bearer
from tokenward.errors import InvalidRequest
from tokenward.server.deps import read_form
from tokenward.server.fastpath import FastPathAPI, read_form_fast

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
        ("POST", "/introspect", {"content": b"token=%" + tok.encode(), "headers": {**svc, **form}}),
        ("POST", "/introspect", {"content": b"token=\xff\xfe", "headers": {**svc, **form}}),
        ("POST", "/introspect", {"content": b"token=a%00", "headers": {**svc, **form}}),
        ("POST", "/introspect", {"content": b"&" * 64 + b"token=a", "headers": {**svc, **form}}),
        ("POST", "/introspect", {"content": b"token=" + b"a" * 70000, "headers": {**svc, **form}}),
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
    assert statuses == [
        200, 401, 401, 401, 401, 401, 405, 200, 200, 401, 401, 400, 400, 400, 200, 400, 400, 400,
        413, 200,
    ]  # fmt: skip


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


FORM = "application/x-www-form-urlencoded"


async def _read(reader: Any, body: bytes, ctype: str | None, chunk: int) -> tuple[Any, ...]:
    from types import SimpleNamespace

    from starlette.requests import Request

    settings = SimpleNamespace(max_body_bytes=1024)
    app = SimpleNamespace(state=SimpleNamespace(runtime=SimpleNamespace(settings=settings)))
    headers = [(b"content-type", ctype.encode("latin-1"))] if ctype is not None else []
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/introspect", "headers": headers}
    scope["app"] = app
    request = Request(scope, receive)
    try:
        form = await reader(request)
    except InvalidRequest as exc:
        return ("error", exc.description)
    return (form, request.state.resources)


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"token=abc.def.ghi&token_type_hint=access_token", FORM),
        (b"token=a%2Bb+c%20d&client_id=x%3Ay", FORM),  # percent and plus decoding
        (b"token=a&token=b", FORM),  # repeated → invalid_request
        (b"token=a&token=", FORM),  # repeated, even empty
        (b"token=&x=1", FORM),  # an empty value is absent
        (b"token", FORM),  # no "=": an empty value
        (b"&&token=a&&", FORM),  # empty fields skipped
        (b"token=a=b", FORM),  # "=" in a value
        (b"resource=a&resource=b&resource=&token=t", FORM),  # resource may repeat
        (b"token=a%00b", FORM),  # NUL, percent-encoded
        (b"token=a\x00b", FORM),  # NUL, raw
        (b"token=%ff%fe", FORM),  # not UTF-8 once decoded: replacement characters
        (b"token=\xff\xfe", FORM),  # not UTF-8 at all
        (b"token=%ED%A0%80", FORM),  # an encoded surrogate
        (b"&" * 63 + b"token=a", FORM),  # 64 fields: the limit
        (b"&" * 64 + b"token=a", FORM),  # 65 fields: too many
        (b"token=" + b"a" * 1019, FORM),  # the body cap exactly
        (b"token=" + b"a" * 1020, FORM),  # one byte over the cap
        (b"", FORM),
        (b"token=a", None),  # no content type
        (b"token=a", "application/json"),
        (b"token=a", "Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        (b"token=a", " application/x-www-form-urlencoded\xa0"),
        (b"token=a", "application/x-www-form-urlencoded-x"),
    ],
)
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_the_fast_form_reader_answers_as_the_routes_reader(
    body: bytes, ctype: str | None, chunk: int
) -> None:
    import asyncio

    want = asyncio.run(_read(read_form, body, ctype, chunk))
    got = asyncio.run(_read(read_form_fast, body, ctype, chunk))
    assert got == want


def test_the_fast_form_reader_decodes_and_refuses() -> None:
    import asyncio

    form, _ = asyncio.run(_read(read_form_fast, b"token=a%2Bb+c&client_id=%C3%A9", FORM, 4))
    assert form == {"token": "a+b c", "client_id": "\u00e9"}
    assert asyncio.run(_read(read_form_fast, b"token=a&token=b", FORM, 64)) == (
        "error",
        "parameter 'token' is repeated",
    )
    assert asyncio.run(_read(read_form_fast, b"token=a", "text/plain", 64))[0] == "error"

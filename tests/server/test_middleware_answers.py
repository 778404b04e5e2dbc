"""The request middleware's own answers (headers too large, body too large, NUL, an app that
raises) carry the request id once, like every answer of the app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tokenward.server.middleware import RequestMiddleware


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _call(path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> list[Any]:
    sent: list[Any] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": headers,
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    mw = RequestMiddleware(_app, max_header_bytes=1024, max_body_bytes=16, access_log=False)
    asyncio.run(mw(scope, receive, send))
    return sent


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/ok", [], b"", 200),
        ("/ok", [(b"x-big", b"a" * 2048)], b"", 431),
        ("/ok", [(b"content-length", b"999")], b"", 413),
        ("/ok", [], b"x" * 64, 413),
        ("/a\x00b", [], b"", 400),
        ("/boom", [], b"", 500),
    ],
)
def test_one_request_id_per_answer(
    path: str, headers: list[tuple[bytes, bytes]], body: bytes, status: int
) -> None:
    sent = _call(path, [(b"x-request-id", b"abc123"), *headers], body)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == status
    ids = [v for k, v in start["headers"] if k == b"x-request-id"]
    assert ids == [b"abc123"]
